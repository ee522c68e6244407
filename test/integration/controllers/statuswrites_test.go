package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/test/integration/framework"
)

// statusWrites reads the API server's apiserver_request_total for PUTs of
// deployments/status and replicasets/status, by response code.
func (e *env) statusWrites(t *testing.T) map[string]float64 {
	t.Helper()
	counts, err := framework.RequestCounts(e.ctx, e.client)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, c := range counts {
		if c.Verb == "PUT" && c.Subresource == "status" && (c.Resource == "deployments" || c.Resource == "replicasets") {
			out[c.Resource+" "+c.Code] += c.Count
		}
	}
	return out
}

// TestScaleUpStatusWrites: during a fast scale-up the Deployment and
// ReplicaSet controllers sync again before their informers deliver their
// own status writes. They must neither write on the stale copies (409
// Conflict, then a retry) nor answer each write's echo with another
// write; and the status they leave is the truth.
func TestScaleUpStatusWrites(t *testing.T) {
	const maxRaceConflicts = 3
	e := start(t, 20)
	const replicas = 300
	before := e.statusWrites(t)
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, newDeployment("web", replicas, "localhost/skiff/testapp:v1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := e.waitRunning(t, "web", replicas, 60*time.Second)
	d := e.waitComplete(t, "web", 30*time.Second)
	rss, err := e.replicaSets("web")
	if err != nil {
		t.Fatal(err)
	}
	if len(rss) != 1 {
		t.Fatalf("%d replicasets", len(rss))
	}
	rs := rss[0]
	// The truth: every pod Running and Ready, none being deleted.
	n := int32(len(pods))
	if s := rs.Status; s.Replicas != n || s.FullyLabeledReplicas != n || s.ReadyReplicas != n || s.AvailableReplicas != n || s.ObservedGeneration != rs.Generation {
		t.Errorf("replicaset status %+v, want %d of everything at generation %d", s, n, rs.Generation)
	}
	if s := d.Status; s.Replicas != n || s.UpdatedReplicas != n || s.ReadyReplicas != n || s.AvailableReplicas != n || s.UnavailableReplicas != 0 || s.ObservedGeneration != d.Generation {
		t.Errorf("deployment status %+v, want %d of everything at generation %d", s, n, d.Generation)
	}
	// Let any last writes land, then count.
	time.Sleep(500 * time.Millisecond)
	after := e.statusWrites(t)
	delta := map[string]float64{}
	for k, v := range after {
		delta[k] = v - before[k]
	}
	t.Logf("status writes during the scale-up: %v", delta)
	for _, res := range []string{"deployments", "replicasets"} {
		// Working from stale copies conflicted on ~7% of pods (about 20
		// here). A genuine race with another writer of the object (the
		// Deployment controller updating the ReplicaSet between the
		// ReplicaSet controller's read and write) still conflicts now
		// and then under load, as it does upstream: allow a few.
		if c := delta[res+" 409"]; c > maxRaceConflicts {
			t.Errorf("%v PUT %s/status conflicted, more than %d races explain (all: %v)", c, res, maxRaceConflicts, delta)
		}
		// Each sync writes at most once, and pod events are batched
		// (100 ms): a storm is a write per pod event.
		if ok := delta[res+" 200"]; ok > replicas/3 {
			t.Errorf("%v PUT %s/status for %d pods: a write storm (all: %v)", ok, res, replicas, delta)
		}
	}
}
