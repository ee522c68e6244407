package nodeproxy

import (
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testPod(annotations map[string]string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Annotations: annotations}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
	return p
}

func TestKubeletPath(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		sub      string
		query    string
		wantPath string
		wantQ    string
		wantErr  string
	}{
		{"log default container", testPod(nil, "app"), "log", "follow=true&tailLines=3", "/containerLogs/ns/p/app", "follow=true&tailLines=3", ""},
		{"log named", testPod(nil, "a", "b"), "log", "container=b", "/containerLogs/ns/p/b", "", ""},
		{"log init container", testPod(nil, "a", "b"), "log", "container=init", "/containerLogs/ns/p/init", "", ""},
		{"log annotation default", testPod(map[string]string{DefaultContainerAnnotation: "b"}, "a", "b"), "log", "", "/containerLogs/ns/p/b", "", ""},
		{"log ambiguous", testPod(nil, "a", "b"), "log", "", "", "", "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [init]"},
		{"log unknown", testPod(nil, "a"), "log", "container=x", "", "", "container x is not valid for pod p"},
		{"exec", testPod(nil, "app"), "exec", "command=ls&command=-l&stdout=true", "/exec/ns/p/app", "command=ls&command=-l&stdout=true", ""},
		{"exec without command", testPod(nil, "app"), "exec", "stdout=true", "", "", "you must specify at least 1 command"},
		{"attach", testPod(nil, "app"), "attach", "container=app&stdin=true", "/attach/ns/p/app", "stdin=true", ""},
		{"portforward", testPod(nil, "a", "b"), "portforward", "ports=8080,9090", "/portForward/ns/p", "port=8080&port=9090", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			path, out, err := KubeletPath(tc.pod, tc.sub, q)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !apierrors.IsBadRequest(err) {
					t.Fatalf("err = %v, want BadRequest %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if path != tc.wantPath || out.Encode() != tc.wantQ {
				t.Errorf("got %s?%s, want %s?%s", path, out.Encode(), tc.wantPath, tc.wantQ)
			}
		})
	}
}

func TestKubeletHost(t *testing.T) {
	n := &corev1.Node{}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "h"}, {Type: corev1.NodeInternalIP, Address: "fd00::1"}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = 10251
	if h, err := KubeletHost(n); err != nil || h != "[fd00::1]:10251" {
		t.Errorf("got %q, %v", h, err)
	}
	if _, err := KubeletHost(&corev1.Node{}); err == nil {
		t.Error("node without address: want error")
	}
}
