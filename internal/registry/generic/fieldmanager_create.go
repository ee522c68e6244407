package generic

import (
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// A create's managedFields entry is its manager's ownership of every
// field of the object as it is when the field manager sees it (decoded,
// defaulted, prepared), except for the metadata the field manager strips
// (name, namespace, uid, creationTimestamp, generation, resourceVersion,
// selfLink). The pods a ReplicaSet creates from one template all get the
// same entry. The field manager's own create cache
// (FieldManagers.createKey) keys entries by the object's JSON, and
// marshalling the pod to find its key was three quarters of a pod
// create's managedFields CPU.
//
// The request body is a cheaper key: a ReplicaSet sends the same bytes for
// every pod of a template (generateName, no name), and the object the
// field manager sees is a function of those bytes and of what the store
// sets itself, which is either stripped metadata (name, uid, namespace
// from the URL, timestamps) or the same for every create (defaulting and
// PrepareForCreate are deterministic; admission runs after the field
// manager). Two creates of one Store with the same media type, body and
// manager therefore get the same entry. createEntries remembers entries
// by (manager, media type, body); a body it has not seen goes to the field
// manager, whose JSON-keyed cache still serves objects that differ only in
// stripped metadata (pods created with explicit names).
// TestCreateEntriesMatchFieldManager compares both ways.

// createEntries is a Store's cache of create entries.
type createEntries struct {
	mu sync.Mutex
	m  map[createGroup]map[string]metav1.ManagedFieldsEntry
	n  int
	// hits counts creates answered from the cache (for tests).
	hits atomic.Int64
}

type createGroup struct{ manager, mediaType string }

// maxCreateEntries bounds the cache; it is emptied when full.
const maxCreateEntries = 1024

// maxCreateBody is the largest body remembered.
const maxCreateBody = 64 << 10

func newCreateEntries() *createEntries {
	return &createEntries{m: map[createGroup]map[string]metav1.ManagedFieldsEntry{}}
}

func (c *createEntries) lookup(g createGroup, body []byte) (metav1.ManagedFieldsEntry, bool) {
	c.mu.Lock()
	e, ok := c.m[g][string(body)]
	c.mu.Unlock()
	return e, ok
}

func (c *createEntries) add(g createGroup, body []byte, e metav1.ManagedFieldsEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= maxCreateEntries {
		clear(c.m)
		c.n = 0
	}
	bodies := c.m[g]
	if bodies == nil {
		bodies = map[string]metav1.ManagedFieldsEntry{}
		c.m[g] = bodies
	}
	if _, ok := bodies[string(body)]; !ok {
		c.n++
	}
	bodies[string(body)] = e
}

// createManagedFields sets obj's managedFields for a create by manager
// (FieldManagers.Update from an empty object) and returns the object to
// store. opts.Body, when set, is the request body obj was decoded from;
// generated says the store gave obj its name. Only those bodies are
// remembered: a body that names its object (an event, a node, a lease)
// cannot be created twice, so it would only take room.
func (s *Store) createManagedFields(obj runtime.Object, opts CreateOptions, generated bool) runtime.Object {
	manager := opts.FieldManager
	m, err := meta.Accessor(obj)
	if s.creates == nil || !generated || manager == "" || len(opts.Body) == 0 || len(opts.Body) > maxCreateBody || err != nil || len(m.GetManagedFields()) > 0 {
		return s.FieldManagers.Update(s.R, "", s.R.New(), obj, manager)
	}
	g := createGroup{manager: manager, mediaType: opts.MediaType}
	if e, hit := s.creates.lookup(g, opts.Body); hit {
		s.creates.hits.Add(1)
		e.Time = &metav1.Time{Time: time.Now().UTC()}
		e.FieldsV1 = &metav1.FieldsV1{Raw: append([]byte(nil), e.FieldsV1.Raw...)}
		m.SetManagedFields([]metav1.ManagedFieldsEntry{e})
		return obj
	}
	out := s.FieldManagers.Update(s.R, "", s.R.New(), obj, manager)
	if om, err := meta.Accessor(out); err == nil && len(om.GetManagedFields()) == 1 {
		e := om.GetManagedFields()[0]
		if e.Manager == manager && e.FieldsV1 != nil && e.Subresource == "" && e.Operation == metav1.ManagedFieldsOperationUpdate {
			e.FieldsV1 = &metav1.FieldsV1{Raw: append([]byte(nil), e.FieldsV1.Raw...)}
			e.Time = nil
			s.creates.add(g, opts.Body, e)
		}
	}
	return out
}
