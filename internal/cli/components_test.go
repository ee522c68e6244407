package cli

import (
	"slices"
	"testing"

	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/controllermanager"
	"skiff.dev/skiff/internal/server"
)

// `skiff server --controllers` reaches the in-process controller manager.
func TestServerControllersSelection(t *testing.T) {
	s, err := server.New(server.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rc := &rest.Config{Host: "https://127.0.0.1:1"}
	all, err := newControllerManager(rc, nil, "10.42.0.0/16", "", nil, s)
	if err != nil {
		t.Fatal(err)
	}
	some, err := newControllerManager(rc, nil, "10.42.0.0/16", "", []string{"*", "-horizontalpodautoscaling"}, s)
	if err != nil {
		t.Fatal(err)
	}
	allNames := all.(*controllermanager.ControllerManager).Enabled()
	someNames := some.(*controllermanager.ControllerManager).Enabled()
	if !slices.Contains(allNames, "horizontalpodautoscaling") {
		t.Fatalf("default selection %v lacks horizontalpodautoscaling", allNames)
	}
	if slices.Contains(someNames, "horizontalpodautoscaling") || len(someNames) != len(allNames)-1 {
		t.Fatalf("with -horizontalpodautoscaling: %v (all: %v)", someNames, allNames)
	}
	if _, err := newControllerManager(rc, nil, "10.42.0.0/16", "", []string{"nosuch"}, s); err == nil {
		t.Fatal("unknown controller accepted")
	}
}
