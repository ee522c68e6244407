package etcd3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/etcd"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/storage"
	"skiff.dev/skiff/internal/storage/storagetest"
)

// inProcess makes newStore build stores the way the server does for its
// embedded member: the in-process client and Config.KV.
var inProcess bool

func newInProcessStore(t testing.TB) (*Store, *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := etcd.Start(ctx, etcd.Config{
		DataDir:             t.TempDir(),
		ListenClientURLs:    []string{"http://127.0.0.1:0"},
		ListenPeerURLs:      []string{"http://127.0.0.1:0"},
		CompactionRetention: "0",
		UnsafeNoFsync:       true,
	})
	if err != nil {
		t.Fatalf("starting test etcd: %v", err)
	}
	c := srv.InProcessClient()
	t.Cleanup(func() {
		c.Close()
		srv.Close()
	})
	return New(Config{
		Client:  c,
		KV:      srv.InProcessKV(),
		Codec:   storagetest.ProtobufCodec(registry.NewScheme()),
		NewFunc: func() runtime.Object { return &corev1.Pod{} },
	}), c
}

// The store's tests of writes, run again on a store that sends its
// transactions ready-built to the member's in-process KV API.
func TestInProcessKV(t *testing.T) {
	inProcess = true
	t.Cleanup(func() { inProcess = false })
	for name, f := range map[string]func(*testing.T){
		"CreateGet":                 TestCreateGet,
		"TooLarge":                  TestTooLarge,
		"ConflictRetry":             TestGuaranteedUpdateConflictRetry,
		"DeleteCheck":               TestDeleteCheck,
		"RechecksFailures":          TestGuaranteedUpdateRechecksFailuresOnAFreshRead,
		"FromGuess":                 TestGuaranteedUpdateFromGuess,
		"WatchForCache":             TestWatchForCache,
		"WatchPredicateTransitions": TestWatchPredicateTransitions,
		"CanceledWrites":            TestCanceledWrites,
		"SharedCurrent":             TestGuaranteedUpdateSharedCurrent,
	} {
		t.Run(name, f)
	}
}

// txnRecorder is a pb.KVClient that keeps the transaction requests it is
// sent and answers them with an empty success.
type txnRecorder struct {
	pb.KVClient
	reqs []*pb.TxnRequest
}

func (r *txnRecorder) Txn(_ context.Context, in *pb.TxnRequest, _ ...grpc.CallOption) (*pb.TxnResponse, error) {
	r.reqs = append(r.reqs, in)
	return &pb.TxnResponse{Succeeded: true, Header: &pb.ResponseHeader{}}, nil
}

// casRequest is, field for field and byte for byte on the wire, the
// request clientv3 builds for the same compare-and-swap, so a store with
// Config.KV asks etcd exactly what one without it does.
func TestCASRequestIsClientv3s(t *testing.T) {
	rec := &txnRecorder{}
	kv := clientv3.NewKVFromKVClient(rec, nil)
	ctx := context.Background()
	data := []byte("k8s\x00\x0a\x09\x0a\x02v1\x12\x03Pod")
	cases := []struct {
		key     string
		rev     int64
		kind    casKind
		data    []byte
		elseGet bool
		build   func(clientv3.Txn) clientv3.Txn
	}{
		{"/registry/pods/ns/create", 0, casPut, data, false, func(t clientv3.Txn) clientv3.Txn {
			return t.If(clientv3.Compare(clientv3.ModRevision("/registry/pods/ns/create"), "=", 0)).Then(clientv3.OpPut("/registry/pods/ns/create", string(data)))
		}},
		{"/registry/pods/ns/update", 1234567, casPut, data, true, func(t clientv3.Txn) clientv3.Txn {
			k := "/registry/pods/ns/update"
			return t.If(clientv3.Compare(clientv3.ModRevision(k), "=", int64(1234567))).Then(clientv3.OpPut(k, string(data))).Else(clientv3.OpGet(k))
		}},
		{"/registry/pods/ns/empty", 9, casPut, nil, true, func(t clientv3.Txn) clientv3.Txn {
			k := "/registry/pods/ns/empty"
			return t.If(clientv3.Compare(clientv3.ModRevision(k), "=", int64(9))).Then(clientv3.OpPut(k, "")).Else(clientv3.OpGet(k))
		}},
		{"/registry/pods/ns/delete", 77, casDelete, nil, true, func(t clientv3.Txn) clientv3.Txn {
			k := "/registry/pods/ns/delete"
			return t.If(clientv3.Compare(clientv3.ModRevision(k), "=", int64(77))).Then(clientv3.OpDelete(k)).Else(clientv3.OpGet(k))
		}},
	}
	for _, c := range cases {
		rec.reqs = nil
		if _, err := c.build(kv.Txn(ctx)).Commit(); err != nil {
			t.Fatal(err)
		}
		want := rec.reqs[0]
		got := casRequest(c.key, c.rev, c.kind, c.data, c.elseGet)
		if !proto.Equal(got, want) {
			t.Errorf("%s: casRequest\n %v\nclientv3 builds\n %v", c.key, got, want)
		}
		gb, err1 := proto.MarshalOptions{Deterministic: true}.Marshal(got)
		wb, err2 := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err1 != nil || err2 != nil || string(gb) != string(wb) {
			t.Errorf("%s: wire bytes differ (%v %v):\n %q\n %q", c.key, err1, err2, gb, wb)
		}
	}
}

// A write whose context is canceled fails with the context's error
// (through clientv3's error mapping on either path), never with a
// storage error the registry would turn into a 500 or 503.
func TestCanceledWrites(t *testing.T) {
	s, _ := newStore(t)
	live := ctx(t)
	k := key("ns", "cancel")
	if _, err := s.Create(live, k, pod("ns", "cancel", nil)); err != nil {
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Create(dead, key("ns", "other"), pod("ns", "other", nil)); !errors.Is(err, context.Canceled) {
		t.Errorf("create with a canceled context: %v, want context.Canceled", err)
	}
	cur, err := s.Get(live, k, storage.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	guess := &storage.Stored{Key: k, ResourceVersion: rvOf(t, cur), Object: cur}
	if _, err := s.GuaranteedUpdateFrom(dead, k, false, func(o runtime.Object) (runtime.Object, error) {
		o.(*corev1.Pod).Labels = map[string]string{"a": "b"}
		return o, nil
	}, guess); !errors.Is(err, context.Canceled) {
		t.Errorf("update with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Delete(dead, k, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("delete with a canceled context: %v, want context.Canceled", err)
	}
	if got, err := s.Get(live, k, storage.GetOptions{}); err != nil || rvOf(t, got) != rvOf(t, cur) {
		t.Errorf("after canceled writes: %v rv %v, want the object unchanged at %d", err, got, rvOf(t, cur))
	}
}

// BenchmarkUpdate is the API server's common write: an update from the
// cache's guess (object and stored bytes), no read, one transaction (plus
// a serializable read of the stored bytes for the guess). Sub-benchmarks:
// through clientv3 and with Config.KV, both on the member's in-process
// API; cpu-us/op includes the member's apply (fsync off).
//
//	go test ./internal/storage/etcd3 -run '^$' -bench 'Update|CASRequest' -benchtime 3000x -count 4
func BenchmarkUpdate(b *testing.B) {
	for _, direct := range []bool{false, true} {
		b.Run(fmt.Sprintf("kv=%v", direct), func(b *testing.B) {
			s, c := newInProcessStore(b)
			if !direct {
				s.kv = nil
			}
			ctx := context.Background()
			k := key("ns", "bench")
			out, err := s.Create(ctx, k, pod("ns", "bench", nil))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := cputime.Process()
			for i := 0; b.Loop(); i++ {
				rv := rvOf(b, out)
				resp, err := c.Get(ctx, k)
				if err != nil {
					b.Fatal(err)
				}
				guess := &storage.Stored{Key: k, ResourceVersion: rv, Object: out, Data: resp.Kvs[0].Value}
				out, err = s.GuaranteedUpdateFrom(ctx, k, false, func(o runtime.Object) (runtime.Object, error) {
					o.(*corev1.Pod).Labels = map[string]string{"i": fmt.Sprint(i)}
					return o, nil
				}, guess)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cputime.Process()-start).Nanoseconds())/1e3/float64(b.N), "cpu-us/op")
		})
	}
}

// BenchmarkCASRequest is the client-side cost of one update transaction
// (request building and the call into a KVClient that does nothing):
// clientv3's Txn builder against casRequest.
func BenchmarkCASRequest(b *testing.B) {
	data := make([]byte, 3000)
	k := "/registry/pods/default/deploy-5d8f7c9b4-x2x9q"
	b.Run("clientv3", func(b *testing.B) {
		rec := &txnRecorder{}
		kv := clientv3.NewKVFromKVClient(rec, nil)
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			rec.reqs = rec.reqs[:0]
			if _, err := kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", int64(i))).
				Then(putOp(k, data)).Else(clientv3.OpGet(k)).Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("casRequest", func(b *testing.B) {
		rec := &txnRecorder{}
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			rec.reqs = rec.reqs[:0]
			if _, err := rec.Txn(ctx, casRequest(k, int64(i), casPut, data, true)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Under storage.WithSharedCurrent an update from a guess with its stored
// bytes gets the guess's own object (no copy) and the store never
// modifies it: not when tryUpdate returns a changed shallow copy, not when
// it returns current itself, not on a retry after a stale guess (which
// runs on a private fresh object).
func TestGuaranteedUpdateSharedCurrent(t *testing.T) {
	s, client := newStore(t)
	c := ctx(t)
	k := key("ns", "shared")
	created, err := s.Create(c, k, pod("ns", "shared", map[string]string{"v": "0"}))
	if err != nil {
		t.Fatal(err)
	}
	stored := func(obj runtime.Object) *storage.Stored {
		rv := rvOf(t, obj)
		resp, err := client.Get(c, k, clientv3.WithRev(rv))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("reading %s at %d: %v", k, rv, err)
		}
		return &storage.Stored{Key: k, ResourceVersion: rv, Object: obj, Data: resp.Kvs[0].Value}
	}
	guess := stored(created.DeepCopyObject())
	pristine := guess.Object.DeepCopyObject()
	pristineData := append([]byte(nil), guess.Data...)
	shared := storage.WithSharedCurrent(c)
	relabel := func(v string, calls *[]runtime.Object) storage.UpdateFunc {
		return func(cur runtime.Object) (runtime.Object, error) {
			*calls = append(*calls, cur)
			p := *cur.(*corev1.Pod)
			p.Labels = map[string]string{"v": v}
			return &p, nil
		}
	}
	var calls []runtime.Object
	out, err := s.GuaranteedUpdateFrom(shared, k, false, relabel("1", &calls), guess)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0] != guess.Object {
		t.Fatalf("tryUpdate ran %d times, first on the guess's object: %v", len(calls), len(calls) > 0 && calls[0] == guess.Object)
	}
	if out.(*corev1.Pod).Labels["v"] != "1" || rvOf(t, out) <= guess.ResourceVersion {
		t.Fatalf("result %v at %d", out.(*corev1.Pod).Labels, rvOf(t, out))
	}
	// current itself back: nothing written, the guess untouched.
	cur := stored(out.DeepCopyObject())
	rev, _ := s.CurrentRevision(c)
	same, err := s.GuaranteedUpdateFrom(shared, k, false, func(o runtime.Object) (runtime.Object, error) { return o, nil }, cur)
	if err != nil || rvOf(t, same) != cur.ResourceVersion {
		t.Fatalf("returning current: %v at %v", err, same)
	}
	if now, _ := s.CurrentRevision(c); now != rev {
		t.Fatalf("returning current wrote: revision %d -> %d", rev, now)
	}
	if rvOf(t, cur.Object) != cur.ResourceVersion {
		t.Fatalf("the shared object's resourceVersion was changed to %d", rvOf(t, cur.Object))
	}
	// A stale guess: the retry runs on a private object.
	calls = nil
	if _, err := s.GuaranteedUpdateFrom(shared, k, false, relabel("2", &calls), guess); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0] != guess.Object || calls[1] == guess.Object {
		t.Fatalf("stale shared guess: %d attempts", len(calls))
	}
	if !reflect.DeepEqual(guess.Object, pristine) || !bytes.Equal(guess.Data, pristineData) {
		t.Fatalf("the shared guess was modified: %+v", guess.Object.(*corev1.Pod).ObjectMeta)
	}
	// Without stored bytes, or without the mark, the guess is copied.
	for _, g := range []struct {
		ctx   context.Context
		guess *storage.Stored
	}{
		{shared, &storage.Stored{Key: k, Object: guess.Object}},
		{c, stored(out.DeepCopyObject())},
	} {
		latest, err := s.Get(c, k, storage.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		g.guess.Object, g.guess.Data = latest, nil
		if g.ctx == c {
			g.guess = stored(latest)
		}
		calls = nil
		if _, err := s.GuaranteedUpdateFrom(g.ctx, k, false, relabel("3", &calls), g.guess); err != nil {
			t.Fatal(err)
		}
		if len(calls) == 0 || calls[0] == g.guess.Object {
			t.Fatalf("guess handed over without a copy (shared=%v, data=%v)", storage.SharedCurrent(g.ctx), g.guess.Data != nil)
		}
	}
}
