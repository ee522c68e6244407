// Package version reports skiff's version. The Kubernetes version skiff is
// compatible with is what /version returns (kubectl compares it for skew
// warnings); skiff's own version rides in the git version's build metadata.
package version

// Set at link time with -ldflags "-X skiff.dev/skiff/internal/version.gitCommit=...".
var (
	gitCommit = "unknown"
	buildDate = "1970-01-01T00:00:00Z"
	skiff     = "0.1.0"
)

// Info is the /version document.
type Info struct {
	Major, Minor, GitVersion, GitCommit, BuildDate string
}

// Get returns the version: Kubernetes 1.37 API level.
func Get() Info {
	return Info{Major: "1", Minor: "37", GitVersion: "v1.37.1+skiff-" + skiff, GitCommit: gitCommit, BuildDate: buildDate}
}
