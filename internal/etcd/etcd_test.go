package etcd

import (
	"context"
	"testing"
	"time"
)

func TestStartRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{
		DataDir:          dir,
		ListenClientURLs: []string{"http://127.0.0.1:0"},
		ListenPeerURLs:   []string{"http://127.0.0.1:0"},
		UnsafeNoFsync:    true,
	}
	ctx := context.Background()
	start := time.Now()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh start: %s endpoints %v", time.Since(start), s.Endpoints())
	c, err := NewClient(s.Endpoints(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	c.Close()
	s.Close()
	s.Close() // idempotent

	start = time.Now()
	s, err = Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restart: %s", time.Since(start))
	defer s.Close()
	c, err = NewClient(s.Endpoints(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Get(ctx, "/k")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart got %v, want /k=v", resp.Kvs)
	}
}

func TestStartRequiresDataDir(t *testing.T) {
	if _, err := Start(context.Background(), Config{}); err == nil {
		t.Fatal("Start without DataDir succeeded")
	}
}
