package etcd

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"

	"skiff.dev/skiff/internal/cputime"
)

// BenchmarkCASWrites measures the process CPU per write of the API
// server's write pattern on an embedded member: concurrent writers each
// create a key (a compare-and-swap on mod revision 0) and update it twice
// (compare-and-swap on its mod revision, else read it), ~4 KiB values
// (a pod), while one prefix watch (the watch cache's) consumes every
// event, through clientv3 (as before etcd3.LocalWatchable) or on the
// member's watch stream (as etcd3's local watch reads it). Writes go
// through v3rpc's KV server or InProcessKV's direct path. It reports
// cpu-us/write: on a loaded machine far steadier than ns/op.
//
//	go test -run XXX -bench CASWrites -benchtime 6000x -count 5 ./internal/etcd
func BenchmarkCASWrites(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cfg   Config
		kv    string
		watch string
	}{
		{"kv=v3rpc/watch=clientv3", Config{}, "v3rpc", "clientv3"},
		{"kv=direct/watch=clientv3", Config{}, "direct", "clientv3"},
		{"kv=direct/watch=mvcc", Config{}, "direct", "mvcc"},
	} {
		b.Run(bc.name, func(b *testing.B) { benchCASWrites(b, bc.cfg, bc.kv, bc.watch) })
	}
}

func benchCASWrites(b *testing.B, cfg Config, kvMode, watchMode string) {
	cfg.DataDir = b.TempDir()
	cfg.ListenClientURLs = []string{"http://127.0.0.1:0"}
	cfg.ListenPeerURLs = []string{"http://127.0.0.1:0"}
	cfg.UnsafeNoFsync = true // as the controllers benchmark runs it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	kv := s.InProcessKV()
	if kvMode == "v3rpc" {
		kv = adapter.KvServerToKvClient(v3rpc.NewQuotaKVServer(s.etcd.Server))
	}
	cli := s.InProcessClient()
	defer cli.Close()

	const writers = 32
	const prefix = "/registry/pods/bench/"
	value := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(value)
	// Each key is written three times: b.N writes in all.
	keys := (b.N + 2) / 3
	total := keys * 3

	var seen atomic.Int64
	done := make(chan struct{})
	watchCtx, stopWatch := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer stopWatch()
	switch watchMode {
	case "clientv3":
		wc := cli.Watch(watchCtx, prefix, clientv3.WithPrefix(), clientv3.WithProgressNotify())
		go func() {
			for resp := range wc {
				if seen.Add(int64(len(resp.Events))) >= int64(total) {
					close(done)
					break
				}
			}
			for range wc {
			}
		}()
	case "mvcc":
		// What etcd3's local watch does: the member's watch stream.
		ws := s.InProcessKV().(*directTxnKV).NewWatchStream()
		defer ws.Close()
		if _, err := ws.Watch(watchCtx, clientv3.AutoWatchID, []byte(prefix), []byte(clientv3.GetPrefixRangeEnd(prefix)), 0); err != nil {
			b.Fatal(err)
		}
		go func() {
			for resp := range ws.Chan() {
				if seen.Add(int64(len(resp.Events))) >= int64(total) {
					close(done)
					break
				}
			}
			for range ws.Chan() {
			}
		}()
	default:
		b.Fatalf("unknown watch mode %q", watchMode)
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0, wall0 := cputime.Process(), time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(keys) {
					return
				}
				key := []byte(fmt.Sprintf("%spod-%d", prefix, i))
				rev := int64(0)
				for n := 0; n < 3; n++ {
					val := append([]byte(nil), value...)
					val[n] ^= 0xff
					resp, err := kv.Txn(ctx, &pb.TxnRequest{
						Compare: []*pb.Compare{{Result: pb.Compare_EQUAL, Target: pb.Compare_MOD, Key: key,
							TargetUnion: &pb.Compare_ModRevision{ModRevision: rev}}},
						Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: val}}}},
						Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key}}}},
					})
					if err != nil || !resp.Succeeded {
						b.Errorf("write %s: %v (succeeded %v)", key, err, resp != nil && resp.Succeeded)
						return
					}
					rev = resp.Header.Revision
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("watch saw %d of %d events", seen.Load(), total)
	}
	cpu, wall := cputime.Process()-cpu0, time.Since(wall0)
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-us/write")
	b.ReportMetric(float64(total)/wall.Seconds(), "writes/s")
}
