// Package controllermanager runs skiff's controllers in one process: one
// shared informer factory (one watch per resource per process), one event
// broadcaster, optional leader election through the kube-system
// "kube-controller-manager" Lease, and a registry mapping controller names to
// constructors and worker counts.
//
// Contract: New validates the configuration and builds clients but starts
// nothing; Run blocks until ctx ends (or leadership is lost) and only then
// constructs and starts the controllers, so a standby replica holds no
// watches. Adding a controller is one entry in DefaultRegistry.
package controllermanager
