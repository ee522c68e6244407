// Package volume materialises a pod's volumes on the node and turns its
// containers' volumeMounts into bind mounts.
//
// Everything a pod's volumes need lives under Root/<pod UID>/: emptyDirs
// (a plain directory, or a tmpfs for medium Memory, sized by sizeLimit),
// and the payloads of configMap, secret, downwardAPI and projected volumes
// (secrets and projected volumes on a tmpfs, so their data never reaches
// the disk). hostPath and persistentVolumeClaim (bound to a hostPath or
// local PV) volumes point at the node's own paths and are never deleted.
//
// Payload volumes are written with an atomic writer: files live in a
// timestamped ..<time> directory, ..data is a symlink to it, and each
// visible name is a symlink through ..data, so an update (Setup runs on
// every pod sync) switches the whole volume with one rename, as upstream.
// Service-account tokens come from the TokenRequest API and are requested
// again after 80% of their lifetime; Setup reports when the soonest is due
// so the kubelet can sync the pod in time.
//
// TearDown unmounts every mount under the pod's directory (deepest first)
// before removing it, so a deleted pod leaves no mount or directory
// behind; it refuses to remove a directory it could not unmount.
package volume
