package etcd

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
	"go.etcd.io/etcd/server/v3/storage"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"google.golang.org/grpc"
)

// directTxnKV is the member's KV API (v3rpc's quota-checking KV server
// behind v3client's adapter) with one shortcut: a transaction of the
// shape the storage layer writes with (one compare, at most one put,
// delete or plain range per branch, every key non-empty) goes to
// EtcdServer.Txn directly, after the same backend quota check. For that
// shape v3rpc's request checks (operation count, empty keys, sort
// options, overlapping puts and deletes, which it finds by building two
// interval trees per call) cannot fail, and its response header is
// filled the same way here. Everything else, and every other method,
// takes v3rpc's path.
//
// Errors from the shortcut are etcdserver's own rather than their gRPC
// status form; clientv3.ContextError maps both to the same
// rpctypes.EtcdError or context error (TestDirectTxnMatchesV3RPC).
type directTxnKV struct {
	pb.KVClient
	srv   *etcdserver.EtcdServer
	quota storage.Quota
}

func newDirectTxnKV(srv *etcdserver.EtcdServer) *directTxnKV {
	return &directTxnKV{
		KVClient: adapter.KvServerToKvClient(v3rpc.NewQuotaKVServer(srv)),
		srv:      srv,
		quota:    storage.NewBackendQuota(srv.Logger(), srv.Cfg.QuotaBackendBytes, srv.Backend(), "kv"),
	}
}

func (k *directTxnKV) Txn(ctx context.Context, r *pb.TxnRequest, opts ...grpc.CallOption) (*pb.TxnResponse, error) {
	if !isPlainCAS(r) {
		return k.KVClient.Txn(ctx, r, opts...)
	}
	if !k.quota.Available(r) {
		// What v3rpc's quota check does: raise the NOSPACE alarm and
		// refuse the write.
		k.srv.Alarm(ctx, &pb.AlarmRequest{
			MemberID: uint64(k.srv.MemberID()),
			Action:   pb.AlarmRequest_ACTIVATE,
			Alarm:    pb.AlarmType_NOSPACE,
		})
		return nil, rpctypes.ErrGRPCNoSpace
	}
	resp, err := k.srv.Txn(ctx, r)
	if err != nil {
		return nil, err
	}
	h := resp.Header
	h.ClusterId = uint64(k.srv.Cluster().ID())
	h.MemberId = uint64(k.srv.MemberID())
	h.RaftTerm = k.srv.Term()
	if h.Revision == 0 {
		h.Revision = k.srv.KV().Rev()
	}
	return resp, nil
}

// isPlainCAS reports whether r has one compare on a non-empty key and at
// most one operation per branch, each a put (no ignore flags), delete or
// range (default sort) of a non-empty key: a request v3rpc's checks
// always pass.
func isPlainCAS(r *pb.TxnRequest) bool {
	if len(r.Compare) != 1 || len(r.Compare[0].Key) == 0 || len(r.Success) > 1 || len(r.Failure) > 1 {
		return false
	}
	for _, ops := range [2][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch u := op.Request.(type) {
			case *pb.RequestOp_RequestPut:
				if len(u.RequestPut.Key) == 0 || u.RequestPut.IgnoreValue || u.RequestPut.IgnoreLease {
					return false
				}
			case *pb.RequestOp_RequestDeleteRange:
				if len(u.RequestDeleteRange.Key) == 0 {
					return false
				}
			case *pb.RequestOp_RequestRange:
				rr := u.RequestRange
				if len(rr.Key) == 0 || rr.SortOrder != pb.RangeRequest_NONE || rr.SortTarget != pb.RangeRequest_KEY {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// NewWatchStream returns a watch stream on the member's store: with
// ProgressNotifyInterval, what etcd3.LocalWatchable asks for.
func (k *directTxnKV) NewWatchStream() mvcc.WatchStream { return k.srv.KV().NewWatchStream() }

// StopNotify is closed once the member has stopped.
func (k *directTxnKV) StopNotify() <-chan struct{} { return k.srv.StopNotify() }

// ProgressNotifyInterval is the member's progress report interval
// (Config.WatchProgressNotifyInterval, else etcd's default).
func (k *directTxnKV) ProgressNotifyInterval() time.Duration {
	return v3rpc.GetProgressReportInterval()
}
