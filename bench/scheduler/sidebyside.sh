#!/usr/bin/env bash
# Scheduler end to end, skiff and upstream kube-scheduler v1.37.1 in the
# same run, measured the same way (bench/scheduler/e2e with -kubeconfig and
# -scheduler-cmd): each control plane runs as its own processes (API server
# + etcd, no controller manager, no agent), the benchmark registers hollow
# nodes and creates the pending pods, then starts the scheduler as an
# external command and times it until a watch has seen every pod bound.
#
#   UPSTREAM=/root/upstream-k8s bench/scheduler/sidebyside.sh [NODES] [PODS]
#
# UPSTREAM is a folder prepared by ../shared/anchors/upstream-k8s/setup.sh
# (built outside the tree; never in CI). Results: docs/PERFORMANCE.md.
set -euo pipefail
: "${UPSTREAM:?set UPSTREAM to the folder setup.sh built upstream Kubernetes into}"
nodes=${1:-5000}
pods=${2:-10000}
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/skiff-sched-sbs.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/skiff" ./cmd/skiff
go test -c -o "$work/e2e.test" ./bench/scheduler/e2e
bench() { # kubeconfig scheduler-command label
  echo "== $3 (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$work/e2e.test" -test.run XXX -test.bench . -test.benchtime 1x -test.timeout 60m \
    -kubeconfig "$1" -scheduler-cmd "$2" -nodes "$nodes" -pods "$pods" 2>&1 |
    grep -E 'registered|created|all bound|pods/s|FAIL|Error|error' || true
}

# skiff: server without its scheduler, controller manager or agent.
"$work/skiff" server --data-dir "$work/skiff-data" --bind-address 127.0.0.1 --https-port 36443 \
  --etcd-client-port 32379 --etcd-peer-port 32380 \
  --disable-agent --disable-scheduler --disable-controller-manager >"$work/skiff-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$work/skiff-data/admin.kubeconfig" ] && curl -sfk https://127.0.0.1:36443/readyz >/dev/null && break; sleep 0.1; done
bench "$work/skiff-data/admin.kubeconfig" \
  "$work/skiff scheduler --kubeconfig $work/skiff-data/admin.kubeconfig" "skiff scheduler on skiff server"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

# upstream: etcd + kube-apiserver from the anchor's start.sh; its scheduler
# and controller manager are stopped so the benchmark starts its own
# kube-scheduler with the client QPS limits lifted.
FRESH=1 "$UPSTREAM/start.sh" >"$work/upstream-start.log" 2>&1
trap '"$UPSTREAM/stop.sh" >/dev/null 2>&1 || true; cleanup' EXIT
for c in kube-scheduler kube-controller-manager; do
  kill "$(cat "$UPSTREAM/run/$c.pid")" 2>/dev/null || true
done
cat >"$work/kube-scheduler.yaml" <<YAML
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $UPSTREAM/pki/scheduler.kubeconfig
  qps: 5000
  burst: 10000
leaderElection:
  leaderElect: false
YAML
bench "$UPSTREAM/pki/admin.kubeconfig" \
  "$UPSTREAM/bin/kube-scheduler --config $work/kube-scheduler.yaml --bind-address 127.0.0.1 --secure-port 20259" \
  "kube-scheduler v1.37.1 on kube-apiserver v1.37.1"
