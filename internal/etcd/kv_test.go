package etcd

import (
	"context"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
	"google.golang.org/protobuf/proto"
)

func startTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.ListenClientURLs = []string{"http://127.0.0.1:0"}
	cfg.ListenPeerURLs = []string{"http://127.0.0.1:0"}
	cfg.UnsafeNoFsync = true
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func casReq(key string, rev int64, then *pb.RequestOp, elseGet bool) *pb.TxnRequest {
	r := &pb.TxnRequest{
		Compare: []*pb.Compare{{Result: pb.Compare_EQUAL, Target: pb.Compare_MOD, Key: []byte(key),
			TargetUnion: &pb.Compare_ModRevision{ModRevision: rev}}},
	}
	if then != nil {
		r.Success = []*pb.RequestOp{then}
	}
	if elseGet {
		r.Failure = []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(key)}}}}
	}
	return r
}

func putOp(key, val string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: []byte(val)}}}
}

func delOp(key string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(key)}}}
}

// TestDirectTxnMatchesV3RPC runs the same sequence of transactions on two
// members, one through InProcessKV (whose compare-and-swap transactions
// skip v3rpc) and one through v3rpc's KV server, and requires identical
// responses (headers included, but for the cluster and member IDs, which
// differ between members) and identical errors, plus identical stored
// state at the end. Requests of other shapes must behave the same too
// (they take v3rpc's path).
func TestDirectTxnMatchesV3RPC(t *testing.T) {
	ctx := context.Background()
	a, b := startTestServer(t, Config{}), startTestServer(t, Config{})
	direct := a.InProcessKV()
	if _, ok := direct.(*directTxnKV); !ok {
		t.Fatalf("InProcessKV is %T, want *directTxnKV", direct)
	}
	slow := adapter.KvServerToKvClient(v3rpc.NewQuotaKVServer(b.etcd.Server))

	rangeOp := func(key string, sort pb.RangeRequest_SortOrder) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(key), SortOrder: sort}}}
	}
	steps := []struct {
		req  *pb.TxnRequest
		fast bool
	}{
		{casReq("/a", 0, putOp("/a", "v1"), false), true},                   // create
		{casReq("/a", 0, putOp("/a", "v2"), false), true},                   // create of an existing key: not succeeded
		{casReq("/a", 0, putOp("/a", "v2"), true), true},                    // same, reading the current value
		{casReq("/a", 2, putOp("/a", "v2"), true), true},                    // update at the right revision
		{casReq("/a", 2, putOp("/a", "v3"), true), true},                    // stale update
		{casReq("/b", 0, putOp("/b", ""), true), true},                      // empty value
		{casReq("/a", 3, delOp("/a"), true), true},                          // delete
		{casReq("/a", 3, delOp("/a"), true), true},                          // delete of a deleted key
		{casReq("/c", 0, nil, true), true},                                  // compare only
		{casReq("/b", 4, rangeOp("/b", pb.RangeRequest_NONE), false), true}, // read-only: a range on success
		{casReq("", 0, putOp("/a", "x"), false), false},                     // empty compare key: v3rpc's error
		{casReq("/a", 0, putOp("", "x"), false), false},                     // empty put key: v3rpc's error
		{casReq("/a", 0, rangeOp("/a", 7), false), false},                   // bad sort order: v3rpc's error
		{&pb.TxnRequest{Compare: casReq("/a", 0, nil, false).Compare,
			Success: []*pb.RequestOp{putOp("/d", "1"), delOp("/d")}}, false}, // overlapping put and delete: v3rpc's error
		{&pb.TxnRequest{Success: []*pb.RequestOp{putOp("/e", "1"), putOp("/f", "2")}}, false}, // no compare, two puts
	}
	for i, st := range steps {
		if got := isPlainCAS(st.req); got != st.fast {
			t.Errorf("step %d: isPlainCAS = %v, want %v", i, got, st.fast)
		}
		ra, ea := direct.Txn(ctx, st.req)
		rb, eb := slow.Txn(ctx, st.req)
		ea, eb = clientv3.ContextError(ctx, ea), clientv3.ContextError(ctx, eb)
		if (ea == nil) != (eb == nil) || (ea != nil && ea.Error() != eb.Error()) {
			t.Fatalf("step %d: errors differ: direct %v, v3rpc %v", i, ea, eb)
		}
		if ea != nil {
			continue
		}
		if ra.Header.ClusterId == 0 || ra.Header.MemberId != uint64(a.etcd.Server.MemberID()) || ra.Header.RaftTerm == 0 {
			t.Fatalf("step %d: direct header not filled: %v", i, ra.Header)
		}
		ra.Header.ClusterId, ra.Header.MemberId = rb.Header.ClusterId, rb.Header.MemberId
		if !proto.Equal(ra, rb) {
			t.Fatalf("step %d: responses differ:\ndirect %v\nv3rpc  %v", i, ra, rb)
		}
	}
	ga, err := direct.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := slow.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&pb.RangeResponse{Kvs: ga.Kvs}, &pb.RangeResponse{Kvs: gb.Kvs}) || len(ga.Kvs) == 0 {
		t.Fatalf("stored state differs:\ndirect %v\nv3rpc  %v", ga.Kvs, gb.Kvs)
	}

	// A cancelled context reads as the context's error on both paths.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, ea := direct.Txn(cctx, casReq("/z", 0, putOp("/z", "1"), false))
	_, eb := slow.Txn(cctx, casReq("/z", 0, putOp("/z", "1"), false))
	ea, eb = clientv3.ContextError(cctx, ea), clientv3.ContextError(cctx, eb)
	if !errors.Is(ea, context.Canceled) || !errors.Is(eb, context.Canceled) {
		t.Fatalf("cancelled: direct %v, v3rpc %v; want context.Canceled from both", ea, eb)
	}
}

// TestDirectTxnQuota: a write over the backend quota is refused with
// etcd's NOSPACE error and raises the alarm, as through v3rpc.
func TestDirectTxnQuota(t *testing.T) {
	ctx := context.Background()
	s := startTestServer(t, Config{QuotaBackendBytes: 1})
	_, err := s.InProcessKV().Txn(ctx, casReq("/a", 0, putOp("/a", "v"), false))
	if err := clientv3.ContextError(ctx, err); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("write over quota: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	alarms := s.etcd.Server.Alarms()
	if len(alarms) != 1 || alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("alarms %v, want NOSPACE", alarms)
	}
}
