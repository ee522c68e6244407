package agentjoin

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"skiff.dev/skiff/test/e2e/e2eutil"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/test/integration/framework"
)

const (
	regUser, regPass = "e2e", "s3cret-e2ef"
	nodeName         = "e2ef-node"
	bridgeName       = "skiffe2f0"
	podCIDR          = "10.89.0.0/24"
	cgroupRoot       = "/skiff-e2ef"
)

// authRegistry is an in-process registry that demands basic auth, and
// counts the requests that carried the right credentials.
func authRegistry(t *testing.T) (host string, authed *atomic.Int64) {
	t.Helper()
	authed = &atomic.Int64{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != regUser || p != regPass {
			w.Header().Set("WWW-Authenticate", `Basic realm="skiff-e2ef"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), authed
}

// pushImage uploads img as host/repo:tag with the registry API (monolithic
// blob uploads, then the manifest), authenticating with basic auth.
// (go-containerregistry's remote package would pull docker/cli into the
// module graph for its keychain.)
func pushImage(t *testing.T, host, repo, tag string, img v1.Image) {
	t.Helper()
	do := func(method, url, ctype string, body []byte) *http.Response {
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(regUser, regPass)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %s", method, url, resp.Status)
		}
		return resp
	}
	base := "http://" + host + "/v2/" + repo
	upload := func(digest string, blob []byte) {
		resp := do(http.MethodPost, base+"/blobs/uploads/", "", nil)
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "http") {
			loc = "http://" + host + loc
		}
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		do(http.MethodPut, loc+sep+"digest="+digest, "application/octet-stream", blob)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		upload(d.String(), b)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	upload(cfgName.String(), cfg)
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	do(http.MethodPut, base+"/manifests/"+tag, string(mt), m)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNodeEndToEnd runs a real agent (its own containerd) joined with only
// the server URL and token, then: pulls an image through an in-process
// registry with basic auth and an imagePullSecret (the real CRI pull
// path), reports ErrImagePull/ImagePullBackOff without credentials and
// ErrImageNeverPull, and serves `kubectl top` from the kubelet's stats.
func TestNodeEndToEnd(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the agent builds its built-in images with the go tool")
	}
	c := framework.Start(t, framework.Options{})
	host, authed := authRegistry(t)
	dataDir := t.TempDir()
	cfg := agent.Config{
		Server: c.Server.URL(), Token: joinToken(t, c), DataDir: dataDir, NodeName: nodeName,
		PodCIDR: podCIDR, Bridge: bridgeName, CgroupRoot: cgroupRoot, KubeletPort: freePort(t),
		InsecureRegistries: []string{host}, FlannelBackend: "none",
		Ingress: agent.IngressConfig{Disable: true}, ServiceNetwork: agent.ServiceNetworkConfig{Disable: true},
	}
	a := startAgent(t, c, cfg)

	// Identity: the node's certificate is its own.
	certPEM, err := os.ReadFile(a.NodeCertPath())
	if err != nil {
		t.Fatalf("node certificate: %v", err)
	}
	if cert, err := pki.ParseCertPEM(certPEM); err != nil || cert.Subject.CommonName != "system:node:"+nodeName {
		t.Fatalf("node certificate subject: %v %v", cert.Subject, err)
	}

	// Push the testapp the agent built to the registry, under two tags.
	img, err := tarball.ImageFromPath(filepath.Join(a.Dir(), "image-build", "localhost_skiff_testapp_v1.tar"), nil)
	if err != nil {
		t.Fatalf("reading the built testapp image: %v", err)
	}
	for _, tag := range []string{"v1", "nosecret"} {
		pushImage(t, host, "e2e/testapp", tag, img)
	}
	ctx := context.Background()
	auth := base64.StdEncoding.EncodeToString([]byte(regUser + ":" + regPass))
	if _, err := c.Client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth))},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mkPod := func(name, image string, policy corev1.PullPolicy, secret bool) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: nodeName, TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: policy}}},
		}
		if secret {
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
		}
		if _, err := c.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := authed.Load()
	mkPod("pulled", host+"/e2e/testapp:v1", corev1.PullIfNotPresent, true)
	mkPod("denied", host+"/e2e/testapp:nosecret", corev1.PullIfNotPresent, false)
	mkPod("never", host+"/e2e/testapp:absent", corev1.PullNever, false)

	waitPod(t, c, "pulled", 3*time.Minute, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if authed.Load() == before {
		t.Fatal("the registry saw no authenticated request: the pull did not go through it")
	}
	waitPod(t, c, "never", time.Minute, func(p *corev1.Pod) bool { return waitingReason(p) == "ErrImageNeverPull" })
	seen := map[string]bool{}
	waitPod(t, c, "denied", 2*time.Minute, func(p *corev1.Pod) bool {
		r := waitingReason(p)
		seen[r] = true
		return seen["ErrImagePull"] && r == "ImagePullBackOff" || seen["ImagePullBackOff"] && r == "ErrImagePull"
	})

	// Node status lists the images the node holds, the pulled one too
	// (nodeimages_test.go).
	bins := framework.KubectlBinaries()
	checkNodeImages(t, c, host+"/e2e/testapp:v1", bins)

	// kubectl top: the stats sampler needs two samples for a CPU rate.
	if len(bins) == 0 {
		t.Log("no kubectl binaries: skipping kubectl top")
		return
	}
	for v, bin := range bins {
		deadline := time.Now().Add(90 * time.Second)
		for {
			outPods, errPods := c.Kubectl(t, bin, "", "top", "pods", "-l", "app=pulled")
			outNodes, errNodes := c.Kubectl(t, bin, "", "top", "nodes")
			if errPods == nil && errNodes == nil && strings.Contains(outPods, "pulled") && strings.Contains(outNodes, nodeName) {
				t.Logf("kubectl %s top:\n%s\n%s", v, outPods, outNodes)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kubectl %s top: pods %v\n%s\nnodes %v\n%s", v, errPods, outPods, errNodes, outNodes)
			}
			time.Sleep(2 * time.Second)
		}
	}
}

func waitingReason(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Waiting != nil {
			return cs.State.Waiting.Reason
		}
	}
	return ""
}

func waitPod(t *testing.T, c *framework.Cluster, name string, timeout time.Duration, ok func(*corev1.Pod) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *corev1.Pod
	for time.Now().Before(deadline) {
		p, err := c.Client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = p
			if ok(p) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("pod %s: condition not met in %s; phase %s, statuses %+v", name, timeout, last.Status.Phase, last.Status.ContainerStatuses)
	}
	t.Fatalf("pod %s not found", name)
}

// startAgent runs the agent until the test ends and waits for its Node to
// be Ready. Cleanup stops it, removes every sandbox through a containerd
// of its own, kills leftover shims, and removes the bridge, cgroups and
// mounts.
func startAgent(t *testing.T, c *framework.Cluster, cfg agent.Config) *agent.Agent {
	t.Helper()
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", cfg.Bridge).Run()
		e2eutil.KillShims(t, cfg.DataDir)
		if err := agent.UnmountUnder(cfg.DataDir); err != nil {
			t.Logf("unmounting: %v", err)
		}
		e2eutil.RemoveCgroupTree(t, cfg.CgroupRoot)
	})
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := agent.New(cfg, agent.Deps{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("agent did not stop within a minute")
		}
		if err := e2eutil.PurgeAgent(t, a); err != nil {
			t.Error(err)
		}
	})
	deadline := time.Now().Add(10 * time.Minute)
	for {
		select {
		case err := <-done:
			t.Fatalf("agent exited during start: %v", err)
		default:
		}
		n, err := c.Client.CoreV1().Nodes().Get(context.Background(), cfg.NodeName, metav1.GetOptions{})
		if err == nil && nodeReady(n) {
			// The node is Ready before its built-in images are; the test
			// reads the built testapp tarball.
			select {
			case <-a.ImagesReady():
				return a
			case err := <-done:
				t.Fatalf("agent exited during start: %v", err)
			case <-time.After(time.Until(deadline)):
				t.Fatal("built-in images not ready after 10m")
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("node not Ready after 10m")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
