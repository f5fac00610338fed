#!/usr/bin/env bash
# Query throughput of mvdns-server against Knot DNS, NSD, stock hickory-dns and CoreDNS in
# one run on this machine, with dnsperf. A measurement, not a test; see BENCHMARKS.md.
#   hack/bench-dns.sh [SECONDS_PER_RUN]          default 15
# Installs what it needs: dnsperf, knot, nsd (and python3-venv if `python3 -m venv` fails)
# from Debian packages, hickory-dns from crates.io (cargo install, cached by version under
# ~/.cache/mvdns/tools; the first build takes minutes), CoreDNS via hack/coredns-build.sh,
# matplotlib from PyPI into a venv under ~/.cache/mvdns/tools/plot-venv.
# Each server is pinned to CPU 0 with one worker where it allows, dnsperf to CPU 1. The
# figure that compares servers is QPS per busy server core: QPS / (server CPU seconds /
# wall seconds), because dnsperf on one core cannot saturate the fastest servers.
# Latency percentiles come from a second run of the same length and load with dnsperf -v
# (one line per response, written to tmpfs); that run's own QPS is kept in the TSV.
# mvdns is fed the real way: record sets on the local control plane, status written by
# the operator, the DNS server watching the API server. The operator is stopped as soon
# as both statuses are written (they are static), so it does not keep reconciling on a
# control plane that others may share; the DNS server keeps serving from its watch.
# Output: the table on stdout, target/bench/dns-results.tsv, docs/bench-dns-qps.png.
LOG_TAG=bench
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_RUN=${1:-15}
# The hickory release mvdns itself builds on (hickory-proto/hickory-server in Cargo.lock).
HICKORY_DNS_VERSION=${HICKORY_DNS_VERSION:-0.26.3}
MVDNS_PORT=15353
KNOT_PORT=15354
NSD_PORT=15355
HICKORY_PORT=15356
COREDNS_PORT=15357
W="$ROOT/target/bench"
RESULTS="$W/dns-results.tsv"
PNG="$ROOT/docs/bench-dns-qps.png"
mkdir -p "$W"
[[ "$SECONDS_PER_RUN" =~ ^[1-9][0-9]*$ ]] || die "usage: hack/bench-dns.sh [SECONDS_PER_RUN]"

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || need+=(knot)
command -v nsd >/dev/null || need+=(nsd)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
  # The packages may start system servers on port 53; this benchmark runs its own.
  for svc in knot nsd; do
    $sudo_cmd systemctl stop "$svc" 2>/dev/null || $sudo_cmd service "$svc" stop >/dev/null 2>&1 || true
  done
fi

# Stock hickory-dns (default features) from crates.io, cached like CoreDNS: keyed by version,
# built into a .partial directory and moved into place only when it reports its version.
HICKORY_ROOT="$CACHE/tools/hickory-dns-$HICKORY_DNS_VERSION"
HICKORY="$HICKORY_ROOT/bin/hickory-dns"
if [ ! -x "$HICKORY" ]; then
  start=$(date +%s)
  log "first build of hickory-dns $HICKORY_DNS_VERSION (cargo install from crates.io, ~150 crates): this takes minutes on 2 cores; later runs reuse $HICKORY_ROOT"
  rm -rf "$HICKORY_ROOT.partial"
  with_progress cargo "cargo install hickory-dns" 150 \
    cargo install --locked --version "=$HICKORY_DNS_VERSION" hickory-dns --root "$HICKORY_ROOT.partial" \
    || die "cargo install hickory-dns $HICKORY_DNS_VERSION failed (see above)"
  version=$("$HICKORY_ROOT.partial/bin/hickory-dns" --version) || die "the built hickory-dns does not run"
  matches "$version" "$HICKORY_DNS_VERSION" \
    || die "the built hickory-dns reports $version, not $HICKORY_DNS_VERSION"
  rm -rf "$HICKORY_ROOT"; mv "$HICKORY_ROOT.partial" "$HICKORY_ROOT"
  log "hickory-dns built in $(( $(date +%s) - start ))s: $HICKORY"
fi
COREDNS=$("$ROOT/hack/coredns-build.sh")

PLOT_PYTHON=$(plot_python) # set up before the long part

"$ROOT/hack/testenv.sh" up
eval "$("$ROOT/hack/testenv.sh" env)"
log "building release binaries"
cargo_with_progress "release build" build --release --locked -p mvdns-operator -p mvdns-server
kubectl apply --server-side -f "$ROOT/crds/" >/dev/null
kubectl create namespace bench --dry-run=client -o yaml | kubectl apply -f - >/dev/null

pids=()
OPERATOR_PID=""
tree_pids() { # tree_pids PID: the process and its descendants (NSD forks xfrd, main and servers)
  local c
  echo "$1"
  for c in $(pgrep -P "$1" || true); do tree_pids "$c"; done
}
cleanup() {
  local p all=()
  for p in $OPERATOR_PID "${pids[@]}"; do mapfile -t -O "${#all[@]}" all < <(tree_pids "$p"); done
  for p in "${all[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -f "${VFILE:-}"
  # The big name's objects go (later benchmarks on this control plane watch every
  # namespace, and would carry its 10,000 values).
  kubectl -n bench delete mvrs/web10k service/web10k --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl -n bench delete endpointslices -l kubernetes.io/service-name=web10k --wait=false >/dev/null 2>&1 || true
}
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
# One big name: 10,000 values from a Service without a selector whose 100 EndpointSlices
# are written here (addresses in the test pod range 10.244.100.0-10.244.199.255, answer
# data only, never contacted), served from the operator's MultiValueRecordSlices.
{
  echo "{apiVersion: v1, kind: Service, metadata: {name: web10k, namespace: bench}, spec: {clusterIP: None, ports: [{name: http, port: 80}]}}"
  for ((s = 0; s < 100; s++)); do
    endpoints=""
    for ((h = 1; h <= 100; h++)); do endpoints+="{addresses: [10.244.$((100 + s)).$h], conditions: {ready: true}},"; done
    echo "---"
    echo "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: web10k-$s, namespace: bench, labels: {kubernetes.io/service-name: web10k}}, addressType: IPv4, endpoints: [${endpoints%,}]}"
  done
  echo "---"
  echo "{apiVersion: mvdns.io/v1alpha1, kind: MultiValueRecordSet, metadata: {name: web10k, namespace: bench}, spec: {name: web10k.example.internal., type: A, serviceRef: {name: web10k}}}"
} | kubectl apply --server-side -f - >/dev/null

"$TARGET/release/mvdns-operator" --lease-namespace bench --admin-listen 127.0.0.1:0 >"$W/operator.log" 2>&1 &
OPERATOR_PID=$!
status_written() { # status_written NAME COUNT: status of the current generation, all values healthy
  local g o n
  IFS=/ read -r g o n <<<"$(kubectl -n bench get mvrs "$1" \
    -o jsonpath='{.metadata.generation}/{.status.observedGeneration}/{.status.healthyCount}' 2>/dev/null)"
  [ -n "$o" ] && [ "$g" = "$o" ] && [ "$n" = "$2" ]
}
for ((i = 0; i < 120; i++)); do
  status_written web8 8 && status_written web64 64 && status_written web10k 10000 && break
  kill -0 "$OPERATOR_PID" 2>/dev/null || die "the operator exited (log: $W/operator.log)"
  sleep 0.5
done
[ "$i" -lt 120 ] || die "no status on the record sets after 60s (log: $W/operator.log)"
kill "$OPERATOR_PID"
for ((i = 0; i < 100; i++)); do kill -0 "$OPERATOR_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$OPERATOR_PID" 2>/dev/null && die "the operator did not stop within 10s of SIGTERM"
wait "$OPERATOR_PID" 2>/dev/null || true
OPERATOR_PID=""
log "the record sets have their status; operator stopped (the DNS server serves from its watch)"

taskset -c 0 "$TARGET/release/mvdns-server" --zone example.internal. --listen "127.0.0.1:$MVDNS_PORT" \
  --admin-listen 127.0.0.1:0 --udp-workers 1 >"$W/mvdns.log" 2>&1 &
MVDNS_PID=$!
pids+=("$MVDNS_PID")

# The peers serve one zone file: the same zone, 8 static A records for the like-for-like name.
{
  cat <<'ZONE'
$ORIGIN example.internal.
$TTL 30
@ SOA ns hostmaster 1 3600 600 86400 30
@ NS ns
ns A 127.0.0.1
ZONE
  for i in $(seq 1 8); do printf 'web8 A 192.0.0.%d\n' $((i + 1)); done
} >"$W/example.internal.zone"

# Knot: one UDP worker (also one TCP and one background worker).
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
pids+=("$KNOT_PID")

# NSD: server-count 1 = one serving process (plus its main and xfrd processes, which stay
# idle; all three are counted). No nsd.db, no privilege drop, no remote control. Response
# rate limiting is off: Debian builds it in at 200 answers/s per /24, which drops nearly all
# of dnsperf's queries (Knot has RRL off unless configured; the others have none).
cat >"$W/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$NSD_PORT
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$W"
    database: ""
    zonelistfile: "$W/nsd-zone.list"
    xfrdfile: "$W/nsd-xfrd.state"
    xfrdir: "$W"
    pidfile: "$W/nsd.pid"
    verbosity: 0
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: example.internal
    zonefile: example.internal.zone
CONF
rm -f "$W/nsd.pid"
taskset -c 0 nsd -d -c "$W/nsd.conf" >"$W/nsd.log" 2>&1 &
NSD_PID=$!
pids+=("$NSD_PID")

# hickory-dns: one tokio worker thread (--workers 1; the runtime also has its blocking pool).
# -q: stock hickory-dns logs every request at INFO; the other servers log no queries either.
cat >"$W/hickory-dns.toml" <<CONF
listen_addrs_ipv4 = ["127.0.0.1"]
listen_port = $HICKORY_PORT
directory = "$W"
drop_privileges = false

[[zones]]
zone = "example.internal"
zone_type = "Primary"
file = "example.internal.zone"
CONF
taskset -c 0 "$HICKORY" --workers 1 -q -c "$W/hickory-dns.toml" >"$W/hickory-dns.log" 2>&1 &
HICKORY_PID=$!
pids+=("$HICKORY_PID")

# CoreDNS: the file plugin (the zone is held in memory), no cache plugin: a cache in front of
# an in-memory zone only adds a lookup. GOMAXPROCS=1: one P runs Go code at a time.
cat >"$W/Corefile" <<CONF
example.internal.:$COREDNS_PORT {
    bind 127.0.0.1
    file $W/example.internal.zone
}
CONF
GOMAXPROCS=1 taskset -c 0 "$COREDNS" -conf "$W/Corefile" -quiet >"$W/coredns.log" 2>&1 &
COREDNS_PID=$!
pids+=("$COREDNS_PID")

wait_answer() { # wait_answer PORT NAME PID LOG
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(dig @127.0.0.1 -p "$1" "$2" A +short +time=1 +tries=1 2>/dev/null | wc -l)" -ge 8 ] && return
    kill -0 "$3" 2>/dev/null || die "the server for $2 on port $1 exited: $(tail -5 "$4")"
    sleep 0.2
  done
  die "no answer for $2 on port $1 (log: $4)"
}
wait_answer $MVDNS_PORT web64.example.internal. $MVDNS_PID "$W/mvdns.log"
wait_answer $MVDNS_PORT web10k.example.internal. $MVDNS_PID "$W/mvdns.log"
wait_answer $KNOT_PORT web8.example.internal. $KNOT_PID "$W/knot.log"
wait_answer $NSD_PORT web8.example.internal. $NSD_PID "$W/nsd.log"
wait_answer $HICKORY_PORT web8.example.internal. $HICKORY_PID "$W/hickory-dns.log"
wait_answer $COREDNS_PORT web8.example.internal. $COREDNS_PID "$W/coredns.log"

TCK=$(getconf CLK_TCK)
cpu_ticks() { # cpu_ticks PID: user+system ticks of the process tree (comm may hold spaces)
  local p t=0 v
  for p in $(tree_pids "$1"); do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
mem_kib() { # mem_kib PID: "RSS PSS" in KiB summed over the process tree
  local p r=0 s=0 v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null) || v=0; r=$((r + ${v:-0}))
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || v=0; s=$((s + ${v:-0}))
  done
  echo "$r $s"
}
threads() { # threads PID: threads in the process tree
  local p n=0 tasks
  for p in $(tree_pids "$1"); do tasks=("/proc/$p/task"/*); n=$((n + ${#tasks[@]})); done
  echo "$n"
}
for s in "mvdns $MVDNS_PID" "knot $KNOT_PID" "nsd $NSD_PID" "hickory-dns $HICKORY_PID" "coredns $COREDNS_PID"; do
  read -r name pid <<<"$s"
  set -- "$name" "$pid"
  log "$1: $(tree_pids "$2" | wc -l) process(es), $(threads "$2") threads, affinity $(taskset -cp "$2" | awk '{print $NF}')"
done

# Latency percentiles (nearest rank, microseconds) from dnsperf -v output: "p50 p99 qps".
# Timed-out queries count as slower than any answer ("timeout" if a percentile lands there).
percentiles() {
  local qps
  qps=$(awk '/Queries per second/ {print $4}' "$1")
  awk '$1 == ">" && $2 == "T" { t++; next }
       $1 == ">" && $2 != "I" { h[int($NF * 1000000 + 0.5)]++ }
       END { for (k in h) print k, h[k]; if (t) print "timeout", t }' "$1" \
    | sort -k1,1n | awk -v qps="$qps" '
      { k[NR] = $1; c[NR] = $2; n += $2 }
      END {
        if (n == 0) { print "- - " qps; exit }
        split("0.50 0.99", p, " ")
        for (j = 1; j <= 2; j++) {
          need = p[j] * n; if (need > int(need)) need = int(need) + 1
          cum = 0; for (i = 1; i <= NR; i++) { cum += c[i]; if (cum >= need) break }
          out = out k[i] " "
        }
        print out qps
      }'
}

VFILE=$(mktemp -p /dev/shm mvdns-bench-v.XXXXXX 2>/dev/null || mktemp -p "$W" dnsperf-v.XXXXXX)
# run SERVER QUERY LABEL PID PORT QUERYFILE: a throughput run and a latency run; a table row.
run() {
  local server=$1 query=$2 label=$3 pid=$4 port=$5 queries=$6
  local before after out runtime qps avg lost busy per_core p50 p99 lqps rss pss
  local args=(-s 127.0.0.1 -p "$port" -d "$queries" -l "$SECONDS_PER_RUN" -c 8 -q 200 -S 0)
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 dnsperf "${args[@]}" 2>&1) || die "dnsperf against $label failed: $out"
  after=$(cpu_ticks "$pid")
  runtime=$(awk '/Run time/ {print $4}' <<<"$out")
  qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
  avg=$(awk '/Average Latency/ {printf "%.0f", $4 * 1000000}' <<<"$out")
  lost=$(awk '/Queries lost/ {gsub(/[(%)]/, "", $4); print $4}' <<<"$out")
  if [ -z "$qps" ] || [ -z "$runtime" ]; then die "no result from dnsperf against $label: $out"; fi
  busy=$(awk -v t=$((after - before)) -v hz="$TCK" -v s="$runtime" 'BEGIN {printf "%.3f", t / hz / s}')
  awk -v b="$busy" 'BEGIN {exit !(b > 0)}' || die "no CPU time measured for $label (pid $pid)"
  per_core=$(awk -v q="$qps" -v b="$busy" 'BEGIN {printf "%.0f", q / b}')
  read -r rss pss <<<"$(mem_kib "$pid")"
  taskset -c 1 dnsperf "${args[@]}" -v >"$VFILE" 2>&1 || die "dnsperf -v against $label failed: $(tail -5 "$VFILE")"
  read -r p50 p99 lqps <<<"$(percentiles "$VFILE")"
  : >"$VFILE"
  awk -v l="$lost" 'BEGIN {exit !(l > 1)}' && log "warning: $label lost $lost% of its queries"
  printf '| %-34s | %9.0f | %5.2f | %13s | %6s | %6s | %7.1f |\n' \
    "$label" "$qps" "$busy" "$per_core" "$p50" "$p99" "$(awk -v r="$rss" 'BEGIN {print r / 1024}')"
  printf '%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%.0f\t%s\n' "$server" "$query" "$label" \
    "$qps" "$busy" "$per_core" "$p50" "$p99" "$avg" "$(awk -v r="$rss" 'BEGIN {print r / 1024}')" \
    "$(awk -v r="$pss" 'BEGIN {print r / 1024}')" "$lost" "$lqps" "$runtime" >>"$RESULTS"
}

echo "web8.example.internal A" >"$W/q-web8.txt"
echo "web64.example.internal A" >"$W/q-web64.txt"
echo "web10k.example.internal A" >"$W/q-web10k.txt"
# 95% existing names, 5% NXDOMAIN.
for i in $(seq 1 95); do echo "web64.example.internal A"; done >"$W/q-mixed.txt"
for i in $(seq 1 5); do echo "missing$i.example.internal A"; done >>"$W/q-mixed.txt"

printf 'server\tquery\tlabel\tqps\tbusy\tqps_per_busy_core\tp50_us\tp99_us\tavg_us\trss_mib\tpss_mib\tlost_pct\tlatency_run_qps\trun_seconds\n' >"$RESULTS"
log "dnsperf: ${SECONDS_PER_RUN}s per run (twice per row: throughput, then latency with -v), servers on CPU 0, dnsperf on CPU 1"
echo "| server / query                     |       QPS | busy  | QPS/busy core | p50 us | p99 us | RSS MiB |"
echo "|------------------------------------|-----------|-------|---------------|--------|--------|---------|"
run knot web8 "knot: web8 (8 static A)" $KNOT_PID $KNOT_PORT "$W/q-web8.txt"
run nsd web8 "nsd: web8 (8 static A)" $NSD_PID $NSD_PORT "$W/q-web8.txt"
run hickory-dns web8 "hickory-dns: web8 (8 static A)" $HICKORY_PID $HICKORY_PORT "$W/q-web8.txt"
run coredns web8 "coredns: web8 (file, no cache)" $COREDNS_PID $COREDNS_PORT "$W/q-web8.txt"
run mvdns web8 "mvdns: web8 (8 values, all)" $MVDNS_PID $MVDNS_PORT "$W/q-web8.txt"
run mvdns web64 "mvdns: web64 (8 of 64 at random)" $MVDNS_PID $MVDNS_PORT "$W/q-web64.txt"
run mvdns web10k "mvdns: web10k (8 of 10,000 at random)" $MVDNS_PID $MVDNS_PORT "$W/q-web10k.txt"
run mvdns mixed "mvdns: mixed, 5% NXDOMAIN" $MVDNS_PID $MVDNS_PORT "$W/q-mixed.txt"

# Ratios per busy core: every row to Knot; mvdns to stock hickory-dns and to CoreDNS, with
# the targets (mvdns >= Knot, >= 2.5x hickory-dns, >= 2x CoreDNS).
awk -F'\t' '
  function verdict(r, target) { return sprintf(" (target >= %.1f: %s)", target, r >= target ? "met" : "NOT met") }
  NR == 1 { next }
  { label[NR] = $3; server[NR] = $1; pc[NR] = $6; query[NR] = $2; if (!($1 in first)) first[$1] = $6; last = NR }
  END {
    # A big name answers as fast as a small one (target: within 5%).
    for (i = 2; i <= last; i++) { if (query[i] == "web64") small = pc[i]; if (query[i] == "web10k") big = pc[i] }
    if (small > 0 && big > 0) printf "mvdns 8 of 10,000 / 8 of 64 per busy core: %.3f (target >= 0.95: %s)\n", big / small, big / small >= 0.95 ? "met" : "NOT met"

    for (i = 2; i <= last; i++) if (server[i] != "knot") {
      r = pc[i] / first["knot"]
      printf "ratio to knot per busy core:       %-34s %5.2f%s\n", label[i], r, (server[i] == "mvdns" ? verdict(r, 1) : "")
    }
    n = split("hickory-dns 2.5 coredns 2.0", peer, " ")
    for (j = 1; j < n; j += 2) for (i = 2; i <= last; i++) if (server[i] == "mvdns") {
      r = pc[i] / first[peer[j]]
      printf "mvdns / %-11s per busy core: %-34s %5.2f%s\n", peer[j], label[i], r, verdict(r, peer[j + 1])
    }
  }' "$RESULTS"
log "results: $RESULTS"

"$PLOT_PYTHON" "$ROOT/hack/plot-bench.py" dns "$RESULTS" "$PNG" || die "plotting failed"
log "chart: $PNG"
