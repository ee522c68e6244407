// Command sidebyside is the helper of run.sh, which measures pod start-up
// and memory of skiff's agent and of upstream's kubelet v1.37.1 on the
// same containerd, with the upstream anchor's bench.py (issue 7). Never
// run by CI: run.sh needs root, containerd, runc, the CNI plugins and the
// upstream binaries built outside the tree.
//
// Subcommands:
//
//	images -out DIR [-skiff-images DIR]  write busybox.tar (localhost/busybox:feas, Debian's
//	                                     static /bin/busybox with its applets as symlinks) and
//	                                     pause.tar (localhost/pause:feas, skiff's pause program),
//	                                     and with -skiff-images skiff's built-in images (the
//	                                     agent's offline drop, so it compiles nothing at start)
//	waitnode -kubeconfig K [-node N] -since UNIX_NS
//	                                     wait for the kubeconfig file, then for Node N (any) Ready;
//	                                     print the seconds since UNIX_NS
//	rmsandboxes -socket PATH             stop and remove every pod sandbox of that containerd
//	freeport                             print a free TCP port on 127.0.0.1
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/kubelet/cri"
)

const (
	busyboxRef = "localhost/busybox:feas"
	pauseRef   = "localhost/pause:feas"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sidebyside images|waitnode|rmsandboxes|freeport [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "images":
		err = cmdImages(os.Args[2:])
	case "waitnode":
		err = cmdWaitNode(os.Args[2:])
	case "rmsandboxes":
		err = cmdRemoveSandboxes(os.Args[2:])
	case "freeport":
		err = cmdFreePort()
	default:
		err = fmt.Errorf("unknown subcommand %q (want images, waitnode, rmsandboxes or freeport)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(1)
	}
}

func cmdImages(args []string) error {
	fs := flag.NewFlagSet("images", flag.ExitOnError)
	out := fs.String("out", "", "directory for busybox.tar and pause.tar")
	skiffOut := fs.String("skiff-images", "", "also write skiff's built-in images (pause, testapp) here")
	busybox := fs.String("busybox", "/bin/busybox", "static busybox binary (Debian: apt-get install busybox-static)")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("images: -out is required")
	}
	ctx := context.Background()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", *out, err)
	}
	prog, err := os.ReadFile(*busybox)
	if err != nil {
		return fmt.Errorf("reading busybox (apt-get install -y busybox-static): %w", err)
	}
	applets, err := busyboxApplets(*busybox)
	if err != nil {
		return err
	}
	img, err := busyboxImage(prog, applets)
	if err != nil {
		return err
	}
	if err := writeTar(filepath.Join(*out, "busybox.tar"), busyboxRef, img); err != nil {
		return err
	}
	src, err := images.SourceDir(ctx)
	if err != nil {
		return err
	}
	// pause.tar is skiff's own pause program under the anchor's name.
	tmp, err := os.MkdirTemp("", "sbs-pause")
	if err != nil {
		return fmt.Errorf("creating build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	p, err := images.Build(ctx, src, tmp, images.Spec{Ref: pauseRef, Package: "skiff.dev/skiff/internal/images/pause", Binary: "/pause"})
	if err != nil {
		return err
	}
	if err := moveFile(p, filepath.Join(*out, "pause.tar")); err != nil {
		return err
	}
	if *skiffOut != "" {
		if err := os.MkdirAll(*skiffOut, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", *skiffOut, err)
		}
		for _, s := range images.Specs() {
			if _, err := images.Build(ctx, src, *skiffOut, s); err != nil {
				return err
			}
		}
		// Build leaves the compiled programs beside the tarballs; the
		// agent imports every *.tar of the directory, nothing else.
		bins, _ := filepath.Glob(filepath.Join(*skiffOut, "*.bin"))
		for _, b := range bins {
			_ = os.Remove(b)
		}
	}
	return nil
}

// busyboxApplets asks the binary for its applet list.
func busyboxApplets(bin string) ([]string, error) {
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets: %w", err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list printed no applets", bin)
	}
	return applets, nil
}

// busyboxImage is one layer: /bin/busybox and a symlink /bin/APPLET ->
// busybox per applet; PATH=/bin, default command `sleep 3600`.
func busyboxImage(prog []byte, applets []string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin/", 0o755}, {"etc/", 0o755}, {"tmp/", 0o1777}, {"var/", 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Name: d.name, Typeflag: tar.TypeDir, Mode: d.mode, ModTime: epoch}); err != nil {
			return nil, fmt.Errorf("writing busybox layer: %w", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(prog)), ModTime: epoch}); err != nil {
		return nil, fmt.Errorf("writing busybox layer: %w", err)
	}
	if _, err := tw.Write(prog); err != nil {
		return nil, fmt.Errorf("writing busybox layer: %w", err)
	}
	for _, a := range applets {
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, fmt.Errorf("writing busybox layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing busybox layer: %w", err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, fmt.Errorf("creating busybox layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("appending busybox layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading busybox image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: epoch.UTC()}
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Cmd = []string{"sleep", "3600"}
	return mutate.ConfigFile(img, cf)
}

func writeTar(path, ref string, img v1.Image) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := tarball.WriteToFile(path, r, img); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func moveFile(from, to string) error {
	if err := os.Rename(from, to); err == nil {
		return nil
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("reading %s: %w", from, err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", to, err)
	}
	return nil
}

func cmdWaitNode(args []string) error {
	fs := flag.NewFlagSet("waitnode", flag.ExitOnError)
	kc := fs.String("kubeconfig", "", "admin kubeconfig (waited for when it does not exist yet)")
	node := fs.String("node", "", "node name (empty: any node)")
	since := fs.Int64("since", 0, "start time, Unix nanoseconds (date +%s%N)")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	_ = fs.Parse(args)
	if *kc == "" || *since == 0 {
		return errors.New("waitnode: -kubeconfig and -since are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	t0 := time.Unix(0, *since)
	var cs kubernetes.Interface
	for cs == nil {
		if _, err := os.Stat(*kc); err == nil {
			cfg, err := clientcmd.BuildConfigFromFlags("", *kc)
			if err == nil {
				cfg.Timeout = 2 * time.Second
				if cs, err = kubernetes.NewForConfig(cfg); err != nil {
					return fmt.Errorf("building client from %s: %w", *kc, err)
				}
				break
			}
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("waiting for %s: %w", *kc, err)
		}
	}
	// Polled (not watched) so a server that is not up yet costs nothing
	// but a refused connection; 20 ms is well under the resolution wanted.
	for {
		if anyReady(ctx, cs, *node) {
			fmt.Printf("%.3f\n", time.Since(t0).Seconds())
			return nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("waiting for node %s Ready: %w", *node, err)
		}
	}
}

// anyReady reports whether node (any node when empty) is Ready.
func anyReady(ctx context.Context, cs kubernetes.Interface, node string) bool {
	if node != "" {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		return err == nil && nodeReady(n)
	}
	l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	for i := range l.Items {
		if nodeReady(&l.Items[i]) {
			return true
		}
	}
	return false
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// cmdRemoveSandboxes empties a containerd the agent has stopped using: a
// stopped skiff agent leaves its pods running for the next start to adopt.
func cmdRemoveSandboxes(args []string) error {
	fs := flag.NewFlagSet("rmsandboxes", flag.ExitOnError)
	socket := fs.String("socket", "", "containerd socket path")
	_ = fs.Parse(args)
	if *socket == "" {
		return errors.New("rmsandboxes: -socket is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cri.Dial(ctx, "unix://"+*socket)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", *socket, err)
	}
	defer c.Close()
	l, err := c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("listing sandboxes: %w", err)
	}
	var errs []error
	for _, sb := range l.Items {
		if _, err := c.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil && status.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("stopping sandbox %s: %w", sb.Id, err))
			continue
		}
		if _, err := c.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil && status.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("removing sandbox %s: %w", sb.Id, err))
		}
	}
	fmt.Printf("removed %d sandboxes\n", len(l.Items)-len(errs))
	return errors.Join(errs...)
}

func cmdFreePort() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	fmt.Println(strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	return nil
}
