package agent

import "testing"

func TestFlags(t *testing.T) {
	cmd := NewCommand()
	for _, f := range []string{"server", "token", "ca-file", "kubeconfig", "data-dir", "node-name", "node-ip", "kubelet-port", "container-runtime-endpoint", "pod-cidr"} {
		if cmd.Flags().Lookup(f) == nil {
			t.Errorf("skiff agent lacks --%s", f)
		}
	}
	if err := cmd.RunE(cmd, nil); err == nil {
		t.Error("running without --server/--token or --kubeconfig should fail")
	}
	if NewCheckConfigCommand().Flags().Lookup("container-runtime-endpoint") == nil {
		t.Error("check-config lacks --container-runtime-endpoint")
	}
}
