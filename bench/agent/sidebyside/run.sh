#!/usr/bin/env bash
# Pod start-up and memory, skiff's agent and upstream's kubelet v1.37.1 side
# by side on the same containerd (Debian's 1.6), measured by the upstream
# anchor's own bench.py and rss.sh (issue 7). Never run by CI.
#
#   UPSTREAM=/root/upstream-k8s bench/agent/sidebyside/run.sh
#
# Environment (defaults):
#   UPSTREAM  folder of ../shared/anchors/upstream-k8s/setup.sh (bin/, pki/, start.sh, stop.sh)
#   ANCHOR    /work/shared/anchors/upstream-kubelet (recipe, bench.py, rss.sh, start/stop-node.sh)
#   WORK      /root/kletbench, scratch folder outside the tree (wiped per side)
#   MODES     "upstream split inprocess", the sides to run, in order:
#             upstream   the anchor's node: containerd + etcd/apiserver/scheduler/KCM + kubelet
#             split      `skiff server --disable-agent` + `skiff agent` as its own process, with
#                        names of its own (node skiffsbs-node, bridge skiffsbs0, cgroup /skiffsbs,
#                        pods 10.97.0.0/24, no service network/ingress/overlay): the agent's
#                        memory is its own, as the kubelet's; safe beside other skiff agents
#             inprocess  `skiff server` with its in-process agent and all defaults (node = hostname,
#                        bridge skiff0, cgroup /skiff, service proxy, DNS, ingress on :80/:443,
#                        VXLAN skiff.1; pods 10.97.0.0/17, services 10.97.128.0/17):
#                        the issue's cold-start target; refuses to start if any of those is in use
#   IDLE=60   seconds idle before the 0-pod RSS sample (the recipe's "after ~1 min idle")
#   HOLD=20   seconds after the 30th pod is ready before the 30-pod RSS sample
#   SINGLE=5  pods of the one-at-a-time series; BURST=30 pods of the burst
#
# Results: $WORK/results/ (bench.py summaries and per-pod JSON, RSS lines, logs) and one
# side-by-side table on stdout. The machine is left as found: every side stops its
# processes by PID and removes its pods, sandboxes, bridge, cgroups and mounts (upstream:
# the anchor's stop-node.sh, which also removes the kubelet's nft tables and restores
# sysctls; skiff: the agent removes its own nft tables when it stops, the script only
# reports tables and network namespaces that appeared meanwhile, since other skiff agents
# on the host use the same table names).
set -uo pipefail

: "${UPSTREAM:?set UPSTREAM to the upstream Kubernetes folder (e.g. /root/upstream-k8s)}"
ANCHOR=${ANCHOR:-/work/shared/anchors/upstream-kubelet}
WORK=${WORK:-/root/kletbench}
MODES=${MODES:-upstream split inprocess}
IDLE=${IDLE:-60}
HOLD=${HOLD:-20}
SINGLE=${SINGLE:-5}
BURST=${BURST:-30}
SELF=$(readlink -f "$0")
SRC=$(cd "$(dirname "$SELF")/../../.." && pwd)
RES=$WORK/results
SBS=$WORK/bin/sidebyside
SKIFF=$WORK/bin/skiff
KUBECTL=$UPSTREAM/bin/kubectl

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# rss LABEL MAIN_PID CONTAINERD_PID SOCKET: one line of KiB values, of the
# kubelet/agent (or skiff server), its containerd, and the containerd-shims
# started for that containerd (their -address names its socket), as rss.sh.
rss() {
  local label=$1 main=$2 ctrd=$3 sock=$4 n=0 sum=0 pss=0 p v
  f() { awk -v k="$2:" '$1==k{print $2}' /proc/"$1"/status 2>/dev/null; }
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = containerd-shim ] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "-address $sock " || continue
    v=$(f "${p#/proc/}" VmRSS); [ -n "$v" ] || continue
    n=$((n + 1)); sum=$((sum + v)); pss=$((pss + $(awk '/^Pss:/{print $2}' "$p/smaps_rollup" 2>/dev/null || echo 0)))
  done
  echo "$label main_VmRSS=$(f "$main" VmRSS) main_RssAnon=$(f "$main" RssAnon) containerd_VmRSS=$(f "$ctrd" VmRSS) containerd_RssAnon=$(f "$ctrd" RssAnon) shims=$n shims_VmRSS=$sum shims_Pss=$pss load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)"
}
if [ "${1:-}" = --rss ]; then shift; rss "$@"; exit 0; fi

# --- prerequisites -----------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root"
for b in kubelet kube-apiserver kubectl etcd; do [ -x "$UPSTREAM/bin/$b" ] || die "$UPSTREAM/bin/$b missing (run the upstream setup.sh)"; done
[ -f "$ANCHOR/bench.py" ] || die "$ANCHOR/bench.py missing (ANCHOR=the upstream-kubelet anchor folder)"
for c in containerd ctr runc openssl python3 nft ip go; do command -v $c >/dev/null || die "$c not found"; done
python3 -c 'import yaml' 2>/dev/null || die "python3-yaml missing (apt-get install -y python3-yaml)"
[ -x /bin/busybox ] || die "/bin/busybox missing (apt-get install -y busybox-static)"
[ -x /usr/lib/cni/bridge ] || die "CNI plugins missing in /usr/lib/cni (apt-get install -y containernetworking-plugins)"
case "$WORK" in "$SRC"|"$SRC"/*) die "WORK must be outside the source tree";; esac

mkdir -p "$WORK/bin" "$RES"
log "building skiff and the helper"
(cd "$SRC" && go build -o "$SKIFF" ./cmd/skiff && go build -o "$SBS" ./bench/agent/sidebyside) || die "build failed"
log "building the images (busybox.tar, pause.tar; skiff's built-ins for the agents' offline drop)"
rm -rf "$WORK/feas" "$WORK/skiff-images"
(cd "$SRC" && "$SBS" images -out "$WORK/feas" -skiff-images "$WORK/skiff-images") || die "building images failed"

# wait_sa KUBECONFIG: pods are admitted only once the default ServiceAccount exists.
wait_sa() {
  for _ in $(seq 600); do "$KUBECTL" --kubeconfig "$1" get sa default -o name >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
# bench SIDE KUBECONFIG RSS_SCRIPT: bench.py single then burst; RSS_SCRIPT LABEL prints
# one RSS line (sampled idle, and by bench.py's hook while the burst's pods run).
bench() {
  local side=$1 kc=$2 rss_script=$3 id
  id=$(date +%H%M%S)
  log "$side: idle ${IDLE}s, then the 0-pod RSS sample"
  sleep "$IDLE"; "$rss_script" idle >>"$RES/$side.rss"; tail -n 1 "$RES/$side.rss" >&2
  log "$side: bench.py single -n $SINGLE"
  python3 "$WORK/bench.py" --kubeconfig "$kc" --mode single -n "$SINGLE" --prefix "s$id" \
    --json "$RES/$side-single.json" | tee "$RES/$side-single.txt" >&2
  sleep 5
  log "$side: bench.py burst -n $BURST"
  python3 "$WORK/bench.py" --kubeconfig "$kc" --mode burst -n "$BURST" --prefix "b$id" \
    --hook "sleep $HOLD; '$rss_script' with$BURST >>'$RES/$side.rss'" \
    --json "$RES/$side-burst.json" | tee "$RES/$side-burst.txt" >&2
  tail -n 1 "$RES/$side.rss" >&2
}
# rss_script SIDE MAIN_PID CONTAINERD_PID SOCKET [EXTRA]: writes $WORK/rss-SIDE.sh LABEL
rss_script() {
  printf '#!/bin/bash\n%s\n%q --rss "$1" %q %q %q\n' "${5:-}" "$SELF" "$2" "$3" "$4" >"$WORK/rss-$1.sh"
  chmod +x "$WORK/rss-$1.sh"; echo "$WORK/rss-$1.sh"
}
nft_tables() { nft list tables 2>/dev/null | sort; }
rm_cgroups() { # every cgroup v1 hierarchy's NAME, deepest first
  local c
  for c in /sys/fs/cgroup/*/"$1"; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  ls -d /sys/fs/cgroup/*/"$1" 2>/dev/null | sed 's/^/WARNING: cgroup left: /' >&2
  return 0
}
stop_pid() { # PID NAME: SIGTERM, wait up to 30 s, then SIGKILL
  local p=$1 i
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null
  for i in $(seq 150); do kill -0 "$p" 2>/dev/null || { log "stopped $2 ($p)"; return 0; }; sleep 0.2; done
  kill -9 "$p" 2>/dev/null; log "killed $2 ($p)"
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", (b - a) / 1e9}'; } # FROM_NS TO_NS
port_free() { ! ss -Hltn "sport = :$1" | grep -q . ; }

# --- upstream kubelet ----------------------------------------------------------
run_upstream() {
  local K=$WORK/klet t0 t1
  for _ in $(seq 120); do pgrep -f kube-apiserver >/dev/null || break; log "kube-apiserver already running (another benchmark?); waiting"; sleep 10; done
  pgrep -f kube-apiserver >/dev/null && { log "upstream: kube-apiserver still running, side skipped"; return 1; }
  for p in 16443 23790 23800 10250 10248; do port_free $p || { log "upstream: port $p in use, side skipped"; return 1; }; done
  ip link show kbench0 >/dev/null 2>&1 && { log "upstream: bridge kbench0 exists, side skipped"; return 1; }
  mountpoint -q "$K/kubelet" 2>/dev/null && umount "$K/kubelet"
  rm -rf "$K"; mkdir -p "$K/containerd" "$K/cni/net.d" "$K/pki"
  # The anchor's files, copied out of the tree and their placeholders filled in.
  cp "$ANCHOR/containerd-config.toml" "$K/containerd/config.toml"
  cp "$ANCHOR/10-kbench.conflist" "$K/cni/net.d/"
  cp "$ANCHOR"/{kubelet-config.yaml,start-node.sh,stop-node.sh,rss.sh,bench.py} "$K/"
  chmod u+w -R "$K"
  sed -i "s#@KLET@#$K#g; s#@UPSTREAM@#$UPSTREAM#g; s#@FEAS@#$WORK/feas#g" \
    "$K/containerd/config.toml" "$K/cni/net.d/10-kbench.conflist" "$K"/*.sh "$K"/*.yaml
  # the kubelet's client certificate, as the recipe makes it
  (cd "$K/pki" &&
    openssl req -newkey rsa:2048 -nodes -keyout kubelet.key -out kubelet.csr \
      -subj "/CN=system:node:bench-node/O=system:nodes" 2>/dev/null &&
    printf "extendedKeyUsage=clientAuth\n" >kubelet.ext &&
    openssl x509 -req -in kubelet.csr -CA "$UPSTREAM/pki/ca.crt" -CAkey "$UPSTREAM/pki/ca.key" \
      -CAserial ca.srl -CAcreateserial -out kubelet.crt -days 3650 -extfile kubelet.ext 2>/dev/null) ||
    { log "upstream: making the kubelet certificate failed"; return 1; }
  cat >"$K/pki/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: upstream
  cluster:
    server: https://127.0.0.1:16443
    certificate-authority: $UPSTREAM/pki/ca.crt
users:
- name: kubelet
  user:
    client-certificate: $K/pki/kubelet.crt
    client-key: $K/pki/kubelet.key
contexts:
- name: kubelet@upstream
  context: {cluster: upstream, user: kubelet}
current-context: kubelet@upstream
EOF
  local kc=$UPSTREAM/pki/admin.kubeconfig
  trap '"$WORK/klet/stop-node.sh" >&2' EXIT
  log "upstream: start-node.sh (fresh etcd)"
  t0=$(date +%s%N)
  "$SBS" waitnode -kubeconfig "$kc" -node bench-node -since "$t0" >"$RES/upstream.ready" 2>"$RES/upstream.ready.err" &
  local w=$!
  FRESH=1 "$K/start-node.sh" >"$RES/upstream-start.log" 2>&1
  t1=$(date +%s%N)
  wait $w || { log "upstream: node not Ready ($(cat "$RES/upstream.ready.err"))"; "$K/stop-node.sh" >&2; trap - EXIT; return 1; }
  echo "start_node_total=$(secs "$t0" "$t1")" >"$RES/upstream.cold"
  echo "node_ready=$(cat "$RES/upstream.ready")" >>"$RES/upstream.cold"
  cat "$RES/upstream.cold" >&2
  wait_sa "$kc" || { log "upstream: no default ServiceAccount"; "$K/stop-node.sh" >&2; trap - EXIT; return 1; }
  # the anchor's rss.sh too (its own log), then the same line as for skiff
  (cd "$K" && bench upstream "$kc" "$(rss_script upstream "$(cat "$K/kubelet.pid")" "$(cat "$K/containerd.pid")" \
    "$K/containerd/containerd.sock" "'$K/rss.sh' \"\$1\" >>'$RES/upstream.rss.anchor'")")
  cp "$K"/logs/*.log "$RES/" 2>/dev/null; mkdir -p "$RES/upstream-logs"; mv "$RES"/{kubelet,containerd}.log "$RES/upstream-logs/" 2>/dev/null
  log "upstream: stop-node.sh"
  "$K/stop-node.sh" >&2
  trap - EXIT
}

# --- skiff -------------------------------------------------------------------
# skiff_cleanup DATADIR AGENTDIR BRIDGE CGROUP SIDE: after the processes are stopped.
skiff_cleanup() {
  local data=$1 adir=$2 br=$3 cg=$4 side=$5 m
  ip link del "$br" 2>/dev/null && log "deleted bridge $br"
  rm_cgroups "$cg"
  # nft tables are not touched here: skiff's names are shared by every agent on the host
  # (other engineers' tests may be running one), and a cleanly stopped agent removes the
  # tables it made itself (service proxy, node NAT, an empty policy table).
  # Except: a stopped `skiff server` leaves its in-process agent's service network behind
  # (node NAT, proxy shards, the VXLAN device). The inprocess side starts only when none of
  # those exists, and they carry its 10.97.0.0/16 ranges, so those are removed.
  if [ "$side" = inprocess ] && nft list table ip skiff-node 2>/dev/null | grep -q '10\.97\.'; then
    comm -13 "$WORK/nft-before.txt" <(nft_tables) | while read -r _ fam name; do
      case $name in skiff-node | skiff-proxy-*) nft delete table "$fam" "$name" && log "deleted nft table $fam $name (the in-process agent's)" ;; esac
    done
  fi
  if [ "$side" = inprocess ] && ip -4 addr show dev skiff.1 2>/dev/null | grep -q 'inet 10\.97\.'; then
    ip link del skiff.1 && log "deleted VXLAN device skiff.1 (the in-process agent's)"
  fi
  comm -13 "$WORK/nft-before.txt" <(nft_tables) | sed 's/^/note: nft table new since the start (another agent'"'"'s, or ours left behind): /' >&2
  for m in $(awk -v d="$data" 'index($2, d)==1{print $2}' /proc/mounts | sort -r); do umount "$m" 2>/dev/null || umount -l "$m"; done
  comm -13 "$WORK/netns-before.txt" <(ip netns list | awk '{print $1}' | sort) | sed 's/^/WARNING: network namespace new since the start (ours, or another engineer'"'"'s): /' >&2
  return 0
}

# stop_skiff SIDE: sandboxes first (a stopped agent leaves its pods running
# for the next start to adopt), then agent, its containerd, server.
stop_skiff() {
  local side=$1 sock=$AGENTDIR/agent/containerd/containerd.sock ctrd
  "$KUBECTL" --kubeconfig "$KC" delete pods --all --wait=true --timeout=120s >/dev/null 2>&1
  [ -S "$sock" ] && "$SBS" rmsandboxes -socket "$sock" >&2
  [ -n "${AGENT_PID:-}" ] && stop_pid "$AGENT_PID" "skiff agent"
  [ -n "${SERVER_PID:-}" ] && stop_pid "$SERVER_PID" "skiff server"
  ctrd=$(pgrep -f "containerd --config $AGENTDIR/agent/containerd/config.toml" | head -1)
  [ -n "$ctrd" ] && stop_pid "$ctrd" "the agent's containerd"
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock"); do stop_pid "$p" "leftover shim"; done
  skiff_cleanup "$DATA" "$AGENTDIR" "$BRIDGE" "$CGROUP" "$side"
  AGENT_PID= SERVER_PID=
}

run_skiff() {
  local side=$1
  DATA=$WORK/skiff-$side
  nft_tables >"$WORK/nft-before.txt"
  ip netns list | awk '{print $1}' | sort >"$WORK/netns-before.txt"
  if [ "$side" = split ]; then
    BRIDGE=skiffsbs0 CGROUP=skiffsbs NODE=skiffsbs-node AGENTDIR=$DATA/agent
    ip link show $BRIDGE >/dev/null 2>&1 && { log "split: bridge $BRIDGE exists (another run?), side skipped"; return 1; }
  else
    BRIDGE=skiff0 CGROUP=skiff NODE= AGENTDIR=$DATA
    local busy=
    for p in 6443 2379 2380 10250 80 443; do port_free $p || busy="$busy port:$p"; done
    ss -Hlun "sport = :8472" | grep -q . && busy="$busy udp:8472"
    ip link show skiff0 >/dev/null 2>&1 && busy="$busy bridge:skiff0"
    ip link show skiff.1 >/dev/null 2>&1 && busy="$busy vxlan:skiff.1"
    # an empty /skiff left by an earlier run is fine; one holding processes is not
    [ -n "$(cat /sys/fs/cgroup/*/skiff/cgroup.procs /sys/fs/cgroup/*/skiff/*/cgroup.procs /sys/fs/cgroup/*/skiff/*/*/cgroup.procs 2>/dev/null)" ] && busy="$busy cgroup:/skiff"
    grep -qE ' skiff-(proxy|node)' "$WORK/nft-before.txt" && busy="$busy nft:skiff-proxy/node"
    [ -n "$busy" ] && { log "inprocess: in use:$busy (another skiff with default settings?); side skipped"; return 1; }
  fi
  rm -rf "$DATA"; mkdir -p "$AGENTDIR/agent/images"
  cp "$WORK/skiff-images"/*.tar "$AGENTDIR/agent/images/"
  KC=$DATA/server/admin.kubeconfig
  [ "$side" = inprocess ] && KC=$DATA/admin.kubeconfig
  trap 'stop_skiff '"$side" EXIT
  skiff_side "$side"
  local rc=$?
  stop_skiff "$side"
  trap - EXIT
  return $rc
}

# skiff_side SIDE: start, measure; run_skiff stops and cleans up whatever happens.
skiff_side() {
  local side=$1 t0 port
  log "$side: starting skiff"
  t0=$(date +%s%N)
  "$SBS" waitnode -kubeconfig "$KC" -node "$NODE" -since "$t0" >"$RES/$side.ready" 2>"$RES/$side.ready.err" &
  local w=$!
  if [ "$side" = split ]; then
    port=$("$SBS" freeport)
    "$SKIFF" server --data-dir "$DATA/server" --bind-address 127.0.0.1 --https-port "$port" \
      --etcd-client-port "$("$SBS" freeport)" --etcd-peer-port "$("$SBS" freeport)" --advertise-address 127.0.0.1 \
      --cluster-cidr 10.97.0.0/17 --service-cidr 10.97.128.0/17 --disable-agent >"$RES/$side-server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1200); do [ -s "$DATA/server/token" ] && curl -sfk "https://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
    curl -sfk "https://127.0.0.1:$port/readyz" >/dev/null || { log "$side: server not ready (see $RES/$side-server.log)"; kill $w; return 1; }
    echo "server_readyz=$(secs "$t0" "$(date +%s%N)")" >"$RES/$side.cold"
    # The agent runs from its own copy of the binary, as on a node of its
    # own: two processes mapping one file share its page-cache pages,
    # which count in both VmRSS figures and which the kernel will not
    # page out for either (internal/memtrim skips shared pages).
    cp "$SKIFF" "$SKIFF-agent"
    (cd "$SRC" && exec "$SKIFF-agent" agent --server "https://127.0.0.1:$port" --token "$(cat "$DATA/server/token")" \
      --data-dir "$AGENTDIR" --node-name "$NODE" --kubelet-port "$("$SBS" freeport)" \
      --pod-cidr 10.97.0.0/24 --cluster-cidr 10.97.0.0/17 --bridge "$BRIDGE" --disable-ingress \
      --flannel-backend none --vxlan-device skiffsbs.1 --cgroup-root "/$CGROUP" --disable-service-network \
      >"$RES/$side-agent.log" 2>&1) &
    AGENT_PID=$!
  else
    (cd "$SRC" && exec "$SKIFF" server --data-dir "$DATA" --cluster-cidr 10.97.0.0/17 --service-cidr 10.97.128.0/17 >"$RES/$side-server.log" 2>&1) &
    SERVER_PID=$!
    : >"$RES/$side.cold"
  fi
  wait $w || { log "$side: node not Ready ($(cat "$RES/$side.ready.err"))"; return 1; }
  echo "node_ready=$(cat "$RES/$side.ready")" >>"$RES/$side.cold"
  cat "$RES/$side.cold" >&2
  # built-in images imported from the offline drop, then busybox as an operator would
  local sock=$AGENTDIR/agent/containerd/containerd.sock
  for _ in $(seq 600); do
    "$SKIFF" images list --data-dir "$AGENTDIR" 2>/dev/null | grep -q skiff/testapp && break; sleep 0.2
  done
  "$SKIFF" images import --data-dir "$AGENTDIR" "$WORK/feas/busybox.tar" >&2 || { log "$side: busybox import failed"; return 1; }
  wait_sa "$KC" || { log "$side: no default ServiceAccount"; return 1; }
  local main=${AGENT_PID:-$SERVER_PID}
  [ "$side" = inprocess ] && main=$SERVER_PID
  local ctrd
  ctrd=$(pgrep -f "containerd --config $AGENTDIR/agent/containerd/config.toml" | head -1)
  bench "$side" "$KC" "$(rss_script "$side" "$main" "$ctrd" "$sock")"
  [ "$side" = split ] && "$SELF" --rss server "$SERVER_PID" 0 /nonexistent >>"$RES/$side.rss"
  return 0
}

# --- the table -----------------------------------------------------------------
mib() { [ -n "$1" ] && [ "$1" != 0 ] && awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}' || echo -; }
rssv() { # SIDE SAMPLE KEY
  local l; l=$(grep "^$2 " "$RES/$1.rss" 2>/dev/null | tail -1)
  mib "$(echo "$l" | grep -o "$3=[0-9]*" | cut -d= -f2)"
}
table() {
  local sides=() s
  for s in $MODES; do [ -f "$RES/$s-burst.txt" ] && sides+=("$s"); done
  [ ${#sides[@]} = 0 ] && { log "no side finished"; return; }
  row() { local name=$1; shift; printf '| %-48s |' "$name"; for s in "${sides[@]}"; do printf ' %-22s |' "$("$@" "$s")"; done; echo; }
  printf '| %-48s |' measurement; for s in "${sides[@]}"; do printf ' %-22s |' "$s"; done; echo
  printf '|%s|' "$(printf -- '-%.0s' $(seq 50))"; for s in "${sides[@]}"; do printf '%s|' "$(printf -- '-%.0s' $(seq 24))"; done; echo
  row "cold start: launch -> Node Ready (s)" sh -c 'grep -o "node_ready=.*" "'"$RES"'/$0.cold" | cut -d= -f2'
  row "  split: server launch -> /readyz (s)" sh -c 'grep -o "server_readyz=.*" "'"$RES"'/$0.cold" | cut -d= -f2'
  row "  upstream start-node.sh total (s)" sh -c 'grep -o "start_node_total=.*" "'"$RES"'/$0.cold" | cut -d= -f2 || echo -'
  row "one pod alone p50 / max (s, n=$SINGLE)" sh -c 'echo "$(grep "create-call -> Running+ready" "'"$RES"'/$0-single.txt" | grep -o "p50=[0-9.]*" | cut -d= -f2) / $(grep "create-call -> Running+ready" "'"$RES"'/$0-single.txt" | grep -o "max=[0-9.]*" | cut -d= -f2)"'
  row "$BURST pods back to back p50 / p90 / p99 (s)" sh -c 'l=$(grep "create-call -> Running+ready" "'"$RES"'/$0-burst.txt"); echo "$(echo "$l" | grep -o "p50=[0-9.]*" | cut -d= -f2) / $(echo "$l" | grep -o "p90=[0-9.]*" | cut -d= -f2) / $(echo "$l" | grep -o "p99=[0-9.]*" | cut -d= -f2)"'
  row "  create phase / first create -> last ready (s)" sh -c 'echo "$(grep -o "create phase: [0-9.]*" "'"$RES"'/$0-burst.txt" | grep -o "[0-9.]*$") / $(grep -o "last ready: [0-9.]*" "'"$RES"'/$0-burst.txt" | grep -o "[0-9.]*$")"'
  for smp in idle with$BURST; do
    row "kubelet/agent VmRSS / RssAnon, $smp (MiB)" rss2 "$smp" main_VmRSS main_RssAnon
    row "containerd VmRSS / RssAnon, $smp (MiB)" rss2 "$smp" containerd_VmRSS containerd_RssAnon
  done
  row "shims with $BURST pods: n / VmRSS / Pss (MiB)" sh -c 'l=$(grep "^with'"$BURST"' " "'"$RES"'/$0.rss" | tail -1); n=$(echo "$l" | grep -o "shims=[0-9]*" | cut -d= -f2); v=$(echo "$l" | grep -o "shims_VmRSS=[0-9]*" | cut -d= -f2); p=$(echo "$l" | grep -o "shims_Pss=[0-9]*" | cut -d= -f2); echo "$n / $((v/1024)) / $((p/1024))"'
  row "skiff server (control plane) VmRSS / RssAnon" rss2 server main_VmRSS main_RssAnon
  row "load average at the burst" sh -c 'grep -o "loadavg_before=[0-9. ]*" "'"$RES"'/$0-burst.txt" | cut -d= -f2 | cut -d" " -f1-3'
  echo "(inprocess: the 'kubelet/agent' rows are the whole skiff server process, control plane included)"
}
rss2() { echo "$(rssv "$4" "$1" "$2") / $(rssv "$4" "$1" "$3")"; }

log "results in $RES (load: $(cut -d' ' -f1-3 /proc/loadavg))"
rm -rf "$RES"/*
cp "$ANCHOR/bench.py" "$WORK/bench.py"
for m in $MODES; do
  case $m in
  upstream) run_upstream || log "upstream side failed" ;;
  split | inprocess) run_skiff "$m" || log "$m side failed" ;;
  *) die "unknown mode $m (upstream, split, inprocess)" ;;
  esac
done
table | tee "$RES/table.md"
log "left on the host: netns $(ip netns list | wc -l), bridges $(ip -br link show type bridge | awk '{print $1}' | tr '\n' ' '), nft: $(nft list tables | tr '\n' ' ')"
