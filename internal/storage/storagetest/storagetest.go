// Package storagetest starts throwaway etcd servers for tests anywhere in
// the tree, and builds the codec storage uses.
//
// Contract: StartEtcd returns a client connected to a fresh, empty embedded
// etcd in t.TempDir() listening on free loopback ports; the client and the
// server are closed when the test ends. fsync is off, so each start costs
// tens of milliseconds.
package storagetest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"

	"skiff.dev/skiff/internal/etcd"
)

// Options tune StartEtcdWith.
type Options struct {
	// CompactionMode/CompactionRetention as in etcd.Config; by default
	// auto compaction is off so tests control compaction themselves.
	CompactionMode      string
	CompactionRetention string
}

// StartEtcd starts an embedded etcd for the duration of the test.
func StartEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	return StartEtcdWith(t, Options{})
}

// StartEtcdWith is StartEtcd with options.
func StartEtcdWith(t testing.TB, o Options) *clientv3.Client {
	t.Helper()
	retention := o.CompactionRetention
	if retention == "" {
		retention = "0"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := etcd.Start(ctx, etcd.Config{
		DataDir:             t.TempDir(),
		ListenClientURLs:    []string{"http://127.0.0.1:0"},
		ListenPeerURLs:      []string{"http://127.0.0.1:0"},
		CompactionMode:      o.CompactionMode,
		CompactionRetention: retention,
		UnsafeNoFsync:       true,
	})
	if err != nil {
		t.Fatalf("starting test etcd: %v", err)
	}
	c, err := etcd.NewClient(srv.Endpoints(), nil)
	if err != nil {
		srv.Close()
		t.Fatalf("connecting to test etcd: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
	})
	return c
}

// ProtobufCodec returns the protobuf codec over scheme, the encoding the
// server stores objects in (e.g. storagetest.ProtobufCodec(registry.NewScheme())).
func ProtobufCodec(scheme *runtime.Scheme) runtime.Codec {
	return protobuf.NewSerializer(scheme, scheme)
}
