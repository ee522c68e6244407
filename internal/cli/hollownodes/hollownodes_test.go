package hollownodes

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestParseTaint(t *testing.T) {
	tests := []struct {
		in      string
		want    v1.Taint
		wantErr bool
	}{
		{"k=v:NoSchedule", v1.Taint{Key: "k", Value: "v", Effect: v1.TaintEffectNoSchedule}, false},
		{"k:NoExecute", v1.Taint{Key: "k", Effect: v1.TaintEffectNoExecute}, false},
		{"k=v", v1.Taint{}, true},
		{"k=v:Sometimes", v1.Taint{}, true},
	}
	for _, tt := range tests {
		got, err := ParseTaint(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseTaint(%q) = %v, %v", tt.in, got, err)
		}
	}
}
