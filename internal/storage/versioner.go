package storage

import (
	"context"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// ParseResourceVersion parses a resourceVersion string; "" is 0.
func ParseResourceVersion(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid resource version %q", s)
	}
	return v, nil
}

// SetResourceVersion sets metadata.resourceVersion (0 clears it).
func SetResourceVersion(obj runtime.Object, rv int64) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return fmt.Errorf("accessing object metadata: %w", err)
	}
	if rv == 0 {
		m.SetResourceVersion("")
	} else {
		m.SetResourceVersion(strconv.FormatInt(rv, 10))
	}
	return nil
}

// ObjectResourceVersion returns metadata.resourceVersion as a number.
func ObjectResourceVersion(obj runtime.Object) (int64, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return 0, fmt.Errorf("accessing object metadata: %w", err)
	}
	return ParseResourceVersion(m.GetResourceVersion())
}

// WatchProgressRequester is implemented by stores whose watches opened with
// AllowBookmarks can be asked to deliver, soon, a BOOKMARK carrying a
// revision up to which every event has been sent. The cacher uses it to
// learn that it is up to date with a revision when no event for its own
// resource has that revision (consistent reads).
type WatchProgressRequester interface {
	RequestWatchProgress(ctx context.Context) error
}
