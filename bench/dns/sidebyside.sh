#!/usr/bin/env bash
# Side-by-side cluster DNS benchmark: skiff's DNS server and CoreDNS
# (kubernetes plugin + cache 30) answering for the same skiff API server,
# both loaded by the same dnsperf command in one sitting (issue 6).
#
# Never run in CI. Builds nothing into the tree: binaries go to $WORK.
#
#   bench/dns/sidebyside.sh                 # defaults below
#   COREDNS=/root/coredns-bin/coredns RUNS=3 DURATION=10 CLIENTS=50 bench/dns/sidebyside.sh
#
# Needs: go, dnsperf (2.10 has no percentiles: p50/p99 come from -v, one
# line per answer with its latency, sorted), a CoreDNS binary built outside
# the tree (GOBIN=/root/coredns-bin go install github.com/coredns/coredns@v1.11.3),
# kubectl (any of /usr/lib/google-cloud-sdk/bin/kubectl.1.*).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
COREDNS=${COREDNS:-/root/coredns-bin/coredns}
KUBECTL=${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}
SERVICES=${SERVICES:-100}
CLIENTS=${CLIENTS:-50}       # dnsperf -c
OUTSTANDING=${OUTSTANDING:-100} # dnsperf -q
DURATION=${DURATION:-10}     # seconds per dnsperf run
RUNS=${RUNS:-3}              # alternating runs per server
WORK=${WORK:-$(mktemp -d /tmp/skiff-dns-sbs.XXXXXX)}
mkdir -p "$WORK"
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# COREDNS=none runs skiff alone (checking the script without a CoreDNS build).
for b in $([ "$COREDNS" = none ] || echo "$COREDNS") "$KUBECTL" /usr/bin/dnsperf; do
	[ -x "$b" ] || { echo "missing $b" >&2; exit 1; }
done

# freeport prints a loopback port nobody listens on (TCP or UDP).
freeport() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		if ! ss -Hltun "sport = :$p" | grep -q .; then echo "$p"; return; fi
	done
}

echo "work dir: $WORK"
cd "$ROOT"
# SKIFF_BIN / DNSBENCH_BIN reuse binaries built earlier (a loaded machine
# takes minutes per build).
if [ -z "${SKIFF_BIN:-}" ]; then SKIFF_BIN="$WORK/skiff"; go build -o "$SKIFF_BIN" ./cmd/skiff; fi
if [ -z "${DNSBENCH_BIN:-}" ]; then DNSBENCH_BIN="$WORK/skiff-dnsbench"; go build -o "$DNSBENCH_BIN" ./bench/dns; fi

HTTPS=$(freeport); ETCDC=$(freeport); ETCDP=$(freeport)
"$SKIFF_BIN" server --disable-agent --data-dir "$WORK/data" --bind-address 127.0.0.1 \
	--advertise-address 127.0.0.1 --https-port "$HTTPS" --etcd-client-port "$ETCDC" \
	--etcd-peer-port "$ETCDP" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
KC="$WORK/data/admin.kubeconfig"
for _ in $(seq 120); do
	[ -f "$KC" ] && "$KUBECTL" --kubeconfig "$KC" get --raw /readyz >/dev/null 2>&1 && break
	sleep 1
done
"$KUBECTL" --kubeconfig "$KC" get --raw /readyz >/dev/null

# 100 ClusterIP services without selectors, each with an EndpointSlice of
# two ready endpoints (what CoreDNS's kubernetes plugin and skiff both watch).
{
	echo "apiVersion: v1"
	echo "kind: Namespace"
	echo "metadata: {name: bench}"
	for i in $(seq 0 $((SERVICES - 1))); do
		cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: svc-$i, namespace: bench}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-$i-1
  namespace: bench
  labels: {kubernetes.io/service-name: svc-$i}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["10.42.$((i / 250)).$((i % 250 + 1))"]
  conditions: {ready: true}
- addresses: ["10.42.$((i / 250 + 100)).$((i % 250 + 1))"]
  conditions: {ready: true}
EOF
	done
} >"$WORK/objects.yaml"
"$KUBECTL" --kubeconfig "$KC" apply -f "$WORK/objects.yaml" >/dev/null

QF="$WORK/queries.txt"
for i in $(seq 0 $((SERVICES - 1))); do echo "svc-$i.bench.svc.cluster.local A"; done >"$QF"

SKIFF_PORT=$(freeport)
"$DNSBENCH_BIN" -kubeconfig "$KC" -listen "127.0.0.1:$SKIFF_PORT" ${SKIFF_DNS_FLAGS:-} >"$WORK/skiffdns.log" 2>&1 &
PIDS+=($!)

CORE_PORT=$(freeport)
if [ "$COREDNS" != none ]; then
cat >"$WORK/Corefile" <<EOF
.:$CORE_PORT {
    bind 127.0.0.1
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KC
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    cache 30
}
EOF
"$COREDNS" -conf "$WORK/Corefile" >"$WORK/coredns.log" 2>&1 &
PIDS+=($!)
fi

# Both must answer every service before the runs start.
ready() {
	local port=$1 ok
	for _ in $(seq 60); do
		ok=$(dnsperf -s 127.0.0.1 -p "$port" -d "$QF" -n 1 -c 1 -t 1 2>/dev/null | awk '/Response codes/{print $4}')
		if [ "${ok:-0}" = "$SERVICES" ]; then return 0; fi
		sleep 1
	done
	echo "server on port $port never answered all $SERVICES services (last: ${ok:-0})" >&2
	return 1
}
ready "$SKIFF_PORT"
[ "$COREDNS" = none ] || ready "$CORE_PORT"

# run NAME PORT: one dnsperf run; prints a result row.
run() {
	local name=$1 port=$2 out="$WORK/$1.$3.out"
	local load
	load=$(cut -d' ' -f1 /proc/loadavg)
	dnsperf -s 127.0.0.1 -p "$port" -d "$QF" -c "$CLIENTS" -q "$OUTSTANDING" -l "$DURATION" -v >"$out" 2>&1
	# -v answer lines: "> NOERROR svc-1.bench.svc.cluster.local A 0.000123"
	awk '/^> /{print $NF}' "$out" | sort -g >"$out.lat"
	local n qps avg lost p50 p99 p999
	n=$(wc -l <"$out.lat")
	qps=$(awk '/Queries per second/{print $4}' "$out")
	avg=$(awk '/Average Latency/{print $4}' "$out")
	lost=$(awk '/Queries lost/{print $3}' "$out")
	pct() { awk -v n="$n" -v p="$1" 'NR==int(n*p)+1{printf "%.3f", $1*1000; exit}' "$out.lat"; }
	p50=$(pct 0.50); p99=$(pct 0.99); p999=$(pct 0.999)
	printf "%-8s %-4s %-6s %-10s %-9s %-9s %-9s %-9s %-6s\n" "$name" "$3" "$load" "$qps" "$(awk -v a="$avg" 'BEGIN{printf "%.3f", a*1000}')" "$p50" "$p99" "$p999" "$lost"
}

echo "services=$SERVICES dnsperf -c $CLIENTS -q $OUTSTANDING -l $DURATION -v; $(nproc) cores"
printf "%-8s %-4s %-6s %-10s %-9s %-9s %-9s %-9s %-6s\n" server run load1 qps avg_ms p50_ms p99_ms p99.9_ms lost
for r in $(seq "$RUNS"); do
	run skiff "$SKIFF_PORT" "$r"
	[ "$COREDNS" = none ] || run coredns "$CORE_PORT" "$r"
done
