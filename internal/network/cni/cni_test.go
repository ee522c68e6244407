package cni

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestRender(t *testing.T) {
	b, err := Render(Config{Name: "skiff", Bridge: "skiff0", PodCIDR: netip.MustParsePrefix("10.42.3.0/24"), DataDir: "/d/ipam"})
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Name    string `json:"name"`
		Plugins []struct {
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			IPAM   struct {
				Type    string                `json:"type"`
				DataDir string                `json:"dataDir"`
				Ranges  [][]map[string]string `json:"ranges"`
				Routes  []any                 `json:"routes"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatalf("invalid json: %v\n%s", err, b)
	}
	p := conf.Plugins[0]
	if conf.Name != "skiff" || p.Type != "bridge" || p.Bridge != "skiff0" || p.IPAM.Type != "host-local" || p.IPAM.DataDir != "/d/ipam" {
		t.Errorf("unexpected config:\n%s", b)
	}
	if r := p.IPAM.Ranges[0][0]; r["subnet"] != "10.42.3.0/24" || r["gateway"] != "10.42.3.1" {
		t.Errorf("range %v", r)
	}
	if len(p.IPAM.Routes) != 0 {
		t.Errorf("ipam routes would duplicate the bridge's default route: %v", p.IPAM.Routes)
	}
	if _, err := Render(Config{Name: "x", Bridge: "b", DataDir: "/d"}); err == nil {
		t.Error("missing pod cidr should fail")
	}
}

func TestAllocated(t *testing.T) {
	dir := t.TempDir()
	if got, err := Allocated(dir, "skiff"); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	os.MkdirAll(filepath.Join(dir, "skiff"), 0o755)
	for _, f := range []string{"10.42.0.2", "last_reserved_ip.0", "lock"} {
		os.WriteFile(filepath.Join(dir, "skiff", f), nil, 0o644)
	}
	got, err := Allocated(dir, "skiff")
	if err != nil || len(got) != 1 || got[0].String() != "10.42.0.2" {
		t.Errorf("got %v %v", got, err)
	}
}

// The overlay decides the pod MTU (the uplink's minus the VXLAN header):
// it must reach the bridge plugin, which sets it on the bridge and veths.
func TestRenderMTU(t *testing.T) {
	mtuOf := func(c Config) any {
		b, err := Render(c)
		if err != nil {
			t.Fatal(err)
		}
		var conf struct {
			Plugins []map[string]any `json:"plugins"`
		}
		if err := json.Unmarshal(b, &conf); err != nil {
			t.Fatal(err)
		}
		return conf.Plugins[0]["mtu"]
	}
	c := Config{Name: "skiff", Bridge: "skiff0", PodCIDR: netip.MustParsePrefix("10.42.3.0/24"), DataDir: "/d"}
	if got := mtuOf(c); got != nil {
		t.Errorf("mtu 0 should leave the plugin default, got %v", got)
	}
	c.MTU = 1450
	if got := mtuOf(c); got != float64(1450) {
		t.Errorf("mtu = %v, want 1450", got)
	}
}
