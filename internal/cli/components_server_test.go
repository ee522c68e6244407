package cli_test

import (
	"context"
	"testing"

	"skiff.dev/skiff/internal/cli"
	"skiff.dev/skiff/internal/controllermanager"
	"skiff.dev/skiff/internal/scheduler"
	"skiff.dev/skiff/internal/server"
	"skiff.dev/skiff/test/integration/framework"
)

// skiff server's controller manager and scheduler are built on one
// informer factory; a rebuilt component (the supervisor's restart) gets
// one of its own.
func TestServerComponentsShareInformers(t *testing.T) {
	s := framework.Start(t, framework.Options{}).Server // no components of its own
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := s.Config()
	cfg.DisableControllerManager, cfg.DisableScheduler, cfg.DisableAgent = false, false, true
	fs := cli.Components(cfg)
	if len(fs) != 2 {
		t.Fatalf("%d component factories, want controller manager and scheduler", len(fs))
	}
	build := func(f server.ComponentFactory) server.Component {
		t.Helper()
		c, err := f(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cm := build(fs[0]).(*controllermanager.ControllerManager)
	sched := build(fs[1]).(*scheduler.Scheduler)
	if cm.SharedInformers() == nil || cm.SharedInformers() != sched.Informers() {
		t.Fatalf("controller manager informers %v, scheduler's %v: not one factory", cm.SharedInformers(), sched.Informers())
	}
	cm2 := build(fs[0]).(*controllermanager.ControllerManager)
	sched2 := build(fs[1]).(*scheduler.Scheduler)
	if cm2.SharedInformers() != nil {
		t.Fatal("rebuilt controller manager got the shared informers again (its first run's handlers are still on them)")
	}
	if sched2.Informers() == sched.Informers() {
		t.Fatal("rebuilt scheduler got the shared informers again")
	}
}
