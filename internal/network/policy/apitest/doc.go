// Package apitest tests the network policy controller against skiff's own
// API server (test/integration/framework) and a real kubectl. It lives
// apart from package policy so that the policy package's tests do not
// build the whole control plane.
package apitest
