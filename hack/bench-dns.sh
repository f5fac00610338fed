#!/usr/bin/env bash
# Query throughput of mvdns-server against Knot DNS in one run on this machine, with
# dnsperf (Debian packages). A measurement, not a test; see BENCHMARKS.md.
#   hack/bench-dns.sh [SECONDS_PER_RUN]          default 15
# Each server is pinned to CPU 0 with one UDP worker, dnsperf to CPU 1. The figure that
# compares servers is QPS per busy server core: QPS / (server CPU seconds / wall
# seconds), because dnsperf on one core cannot saturate the fastest servers.
# mvdns is fed the real way: record sets on the local control plane, status written by
# the operator, the DNS server watching the API server.
LOG_TAG=bench
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_RUN=${1:-15}
MVDNS_PORT=15353
KNOT_PORT=15354
W="$ROOT/target/bench"
mkdir -p "$W"

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || need+=(knot)
if [ ${#need[@]} -gt 0 ]; then
  log "installing Debian packages: ${need[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >&2
  # The package starts a system knotd on port 53; this benchmark runs its own.
  $sudo_cmd systemctl stop knot 2>/dev/null || $sudo_cmd pkill -x knotd 2>/dev/null || true
fi

"$ROOT/hack/testenv.sh" up
eval "$("$ROOT/hack/testenv.sh" env)"
log "building release binaries"
cargo build --release -q -p mvdns-operator -p mvdns-server
kubectl apply --server-side -f "$ROOT/crds/" >/dev/null
kubectl create namespace bench --dry-run=client -o yaml | kubectl apply -f - >/dev/null

pids=()
cleanup() { local p; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

values() { # values PREFIX COUNT: a YAML flow list of static values
  local i out=""
  for ((i = 1; i <= $2; i++)); do out+="{value: $1.$((i / 250)).$((i % 250 + 1))},"; done
  echo "[${out%,}]"
}
kubectl apply -f - >/dev/null <<YAML
apiVersion: mvdns.io/v1alpha1
kind: MultiValueRecordSet
metadata: {name: web8, namespace: bench}
spec: {name: web8.example.internal., type: A, values: $(values 192.0 8)}
---
apiVersion: mvdns.io/v1alpha1
kind: MultiValueRecordSet
metadata: {name: web64, namespace: bench}
spec: {name: web64.example.internal., type: A, values: $(values 10.1 64)}
YAML

"$ROOT/target/release/mvdns-operator" --lease-namespace bench --admin-listen 127.0.0.1:0 >"$W/operator.log" 2>&1 &
pids+=($!)
until [ "$(kubectl -n bench get mvrs web64 -o jsonpath='{.status.healthyCount}')" = 64 ]; do sleep 0.5; done

taskset -c 0 "$ROOT/target/release/mvdns-server" --zone example.internal. --listen "127.0.0.1:$MVDNS_PORT" \
  --admin-listen 127.0.0.1:0 --udp-workers 1 >"$W/mvdns.log" 2>&1 &
MVDNS_PID=$!
pids+=($MVDNS_PID)

# Knot: the same zone, 8 static A records for the like-for-like name.
{
  printf '$ORIGIN example.internal.\n$TTL 30\n@ SOA ns hostmaster 1 3600 600 86400 30\n@ NS ns\nns A 127.0.0.1\n'
  for i in $(seq 1 8); do printf 'web8 A 192.0.0.%d\n' $((i + 1)); done
} >"$W/example.internal.zone"
cat >"$W/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$KNOT_PORT
    rundir: $W
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: $W/knot-db
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: $W
zone:
  - domain: example.internal
CONF
taskset -c 0 knotd -c "$W/knot.conf" >"$W/knot.log" 2>&1 &
KNOT_PID=$!
pids+=($KNOT_PID)

wait_answer() { # wait_answer PORT NAME
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(dig @127.0.0.1 -p "$1" "$2" A +short +time=1 +tries=1 2>/dev/null | wc -l)" -ge 8 ] && return
    sleep 0.2
  done
  die "no answer for $2 on port $1 (logs in $W)"
}
wait_answer $MVDNS_PORT web64.example.internal.
wait_answer $KNOT_PORT web8.example.internal.

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run LABEL PID PORT QUERYFILE: one dnsperf run; prints a table row.
run() {
  local label=$1 pid=$2 port=$3 queries=$4 before after out qps busy avg rss
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$SECONDS_PER_RUN" -c 8 -q 200 -S 0 2>&1)
  after=$(cpu_ticks "$pid")
  qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
  avg=$(awk '/Average Latency/ {print $4 * 1000000}' <<<"$out")
  busy=$(echo "($after - $before) / 100 / $SECONDS_PER_RUN" | bc -l)
  rss=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$pid/status")
  printf '| %-34s | %9.0f | %5.2f | %13.0f | %10.0f | %7.1f |\n' \
    "$label" "$qps" "$busy" "$(echo "$qps / $busy" | bc -l)" "$avg" "$rss"
  echo "$label $(echo "$qps / $busy" | bc -l)" >>"$W/per-core.txt"
}

echo "web8.example.internal A" >"$W/q-web8.txt"
echo "web64.example.internal A" >"$W/q-web64.txt"
# 95% existing names, 5% NXDOMAIN.
for i in $(seq 1 95); do echo "web64.example.internal A"; done >"$W/q-mixed.txt"
for i in $(seq 1 5); do echo "missing$i.example.internal A"; done >>"$W/q-mixed.txt"

: >"$W/per-core.txt"
log "dnsperf: ${SECONDS_PER_RUN}s per run, servers on CPU 0, dnsperf on CPU 1"
echo "| server / query                     |       QPS | busy  | QPS/busy core | avg lat us | RSS MiB |"
echo "|------------------------------------|-----------|-------|---------------|------------|---------|"
run "knot: web8 (8 static A)" $KNOT_PID $KNOT_PORT "$W/q-web8.txt"
run "mvdns: web8 (8 values, all)" $MVDNS_PID $MVDNS_PORT "$W/q-web8.txt"
run "mvdns: web64 (8 of 64 at random)" $MVDNS_PID $MVDNS_PORT "$W/q-web64.txt"
run "mvdns: mixed, 5% NXDOMAIN" $MVDNS_PID $MVDNS_PORT "$W/q-mixed.txt"
knot=$(awk 'NR==1 {print $NF}' "$W/per-core.txt")
awk -v k="$knot" 'NR>1 {printf "ratio to knot per busy core: %-34s %.2f\n", substr($0, 1, length($0) - length($NF) - 1), $NF / k}' "$W/per-core.txt"
