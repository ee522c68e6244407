package etcd3

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/storage"
)

// continueToken is the decoded form of ListResult.Continue: the revision of
// the first page (so every page reads the same snapshot) and the next key,
// relative to the list prefix (so a token cannot reach outside it).
type continueToken struct {
	Version string `json:"v"`
	RV      int64  `json:"rv"`
	Start   string `json:"start"`
}

const continueVersion = "meta.k8s.io/v1"

func encodeContinue(prefix, nextKey string, rv int64) (string, error) {
	b, err := json.Marshal(continueToken{Version: continueVersion, RV: rv, Start: strings.TrimPrefix(nextKey, prefix)})
	if err != nil {
		return "", fmt.Errorf("encoding continue token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func decodeContinue(prefix, token string) (startKey string, rv int64, err error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", 0, storage.NewError(storage.ErrCodeInvalidContinue, prefix, 0, "continue key is not valid base64")
	}
	var t continueToken
	if err := json.Unmarshal(b, &t); err != nil || t.Version != continueVersion || t.RV <= 0 {
		return "", 0, storage.NewError(storage.ErrCodeInvalidContinue, prefix, 0, "continue key is not valid")
	}
	return prefix + t.Start, t.RV, nil
}

// readPlan is how a list or get reads etcd: at a fixed revision (exact,
// continue), or at the latest revision with a lower bound.
type readPlan struct {
	withRev      int64
	minRV        int64
	serializable bool
}

func planList(prefix string, opts storage.ListOptions) (readPlan, string, error) {
	rv, err := storage.ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return readPlan{}, "", storage.NewError(storage.ErrCodeInvalidObj, prefix, 0, err.Error())
	}
	var p readPlan
	start := prefix
	switch {
	case opts.Continue != "":
		if rv != 0 {
			return p, "", storage.NewError(storage.ErrCodeInvalidContinue, prefix, rv,
				"specifying resource version is not allowed when using continue")
		}
		if start, p.withRev, err = decodeContinue(prefix, opts.Continue); err != nil {
			return p, "", err
		}
	case opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact:
		p.withRev = rv
	case opts.ResourceVersionMatch == metav1.ResourceVersionMatchNotOlderThan:
		p.minRV = rv
	case opts.ResourceVersionMatch == "":
		// Legacy semantics: a resourceVersion with a limit pages through
		// exactly that revision.
		if rv > 0 && opts.Limit > 0 {
			p.withRev = rv
		} else {
			p.minRV = rv
		}
	default:
		return p, "", storage.NewError(storage.ErrCodeInvalidObj, prefix, rv,
			fmt.Sprintf("unknown resourceVersionMatch %q", opts.ResourceVersionMatch))
	}
	p.serializable = opts.ResourceVersion == "0" && p.withRev == 0
	return p, start, nil
}

// List implements storage.Interface.
func (s *Store) List(ctx context.Context, prefix string, opts storage.ListOptions) (*storage.ListResult, error) {
	plan, start, err := planList(prefix, opts)
	if err != nil {
		return nil, err
	}
	if !opts.Recursive {
		return s.listOne(ctx, prefix, opts, plan)
	}
	rangeEnd := clientv3.GetPrefixRangeEnd(prefix)
	limit := opts.Limit
	fetch := limit
	out := &storage.ListResult{}
	var (
		lastKey string
		more    bool
	)
	for {
		ops := []clientv3.OpOption{clientv3.WithRange(rangeEnd), clientv3.WithLimit(fetch)}
		if plan.withRev > 0 {
			ops = append(ops, clientv3.WithRev(plan.withRev))
		} else if plan.serializable {
			ops = append(ops, clientv3.WithSerializable())
		}
		resp, err := s.client.Get(ctx, start, ops...)
		if err != nil {
			if opts.Continue != "" && storage.IsGone(wrapEtcdError(prefix, plan.withRev, "", err)) {
				return nil, storage.NewError(storage.ErrCodeResourceExpired, prefix, plan.withRev,
					"The provided continue parameter is too old to display a consistent list result. "+
						"You can start a new list without the continue parameter.")
			}
			return nil, wrapEtcdError(prefix, plan.withRev, "listing", err)
		}
		if plan.withRev == 0 {
			if plan.minRV > resp.Header.Revision {
				return nil, tooLargeRV(prefix, plan.minRV, resp.Header.Revision)
			}
			// Later pages of this call read the same snapshot.
			plan.withRev = resp.Header.Revision
		}
		more = resp.More
		full := false
		for i, kv := range resp.Kvs {
			if limit > 0 && int64(len(out.Items)) == limit {
				full, more = true, true
				break
			}
			obj, err := s.decode(string(kv.Key), kv.Value, kv.ModRevision)
			if err != nil {
				return nil, err
			}
			if opts.Predicate == nil || opts.Predicate(obj) {
				out.Items = append(out.Items, obj)
			}
			lastKey = string(kv.Key)
			if opts.Predicate == nil && more && i == len(resp.Kvs)-1 {
				n := resp.Count - int64(len(resp.Kvs))
				out.RemainingItemCount = &n
			}
		}
		if full || !more || (limit > 0 && int64(len(out.Items)) >= limit) {
			break
		}
		// A filtered page is not full yet: read on, in larger steps.
		start = lastKey + "\x00"
		if fetch < maxPageFetch {
			fetch = min(fetch*2, maxPageFetch)
		}
	}
	out.ResourceVersion = plan.withRev
	if more && limit > 0 {
		if out.Continue, err = encodeContinue(prefix, lastKey+"\x00", plan.withRev); err != nil {
			return nil, err
		}
	} else {
		out.RemainingItemCount = nil
	}
	return out, nil
}

func (s *Store) listOne(ctx context.Context, key string, opts storage.ListOptions, plan readPlan) (*storage.ListResult, error) {
	var ops []clientv3.OpOption
	if plan.withRev > 0 {
		ops = append(ops, clientv3.WithRev(plan.withRev))
	} else if plan.serializable {
		ops = append(ops, clientv3.WithSerializable())
	}
	resp, err := s.client.Get(ctx, key, ops...)
	if err != nil {
		return nil, wrapEtcdError(key, plan.withRev, "listing", err)
	}
	rev := plan.withRev
	if rev == 0 {
		if plan.minRV > resp.Header.Revision {
			return nil, tooLargeRV(key, plan.minRV, resp.Header.Revision)
		}
		rev = resp.Header.Revision
	}
	out := &storage.ListResult{ResourceVersion: rev}
	for _, kv := range resp.Kvs {
		obj, err := s.decode(key, kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		if opts.Predicate == nil || opts.Predicate(obj) {
			out.Items = append(out.Items, obj)
		}
	}
	return out, nil
}
