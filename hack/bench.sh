#!/usr/bin/env bash
# The benchmark suite, one command: query throughput against Knot DNS, NSD, stock
# hickory-dns and CoreDNS (hack/bench-dns.sh), then convergence, memory, CPU and status
# writes under churn at each cluster size against CoreDNS's kubernetes plugin
# (hack/bench-convergence.sh), then one name over many pods against CoreDNS's headless
# Service (hack/bench-big-name.sh), one table at the end, and the charts in docs/.
# A measurement, never a test: nothing here fails on a slow figure. See BENCHMARKS.md.
#   hack/bench.sh                 defaults: 15 s per dnsperf run; 1,000 and 10,000 pods
#   MVDNS_BENCH_SECONDS=15 MVDNS_BENCH_SIZES="1000 10000" MVDNS_BENCH_FLIPS=400 \
#   MVDNS_BENCH_CHURN=100 MVDNS_BENCH_BIG_SIZES="100 1000 10000 50000" hack/bench.sh
# First run: installs dnsperf, knot, nsd (apt), builds hickory-dns (cargo install, cached),
# CoreDNS (Go module, cached), matplotlib (PyPI venv, cached) and, if needed, the
# Kubernetes binaries (cached); each step says what it is doing.
LOG_TAG=bench
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_RUN=${MVDNS_BENCH_SECONDS:-15}
SIZES=${MVDNS_BENCH_SIZES:-1000 10000}
FLIPS=${MVDNS_BENCH_FLIPS:-400}
CHURN=${MVDNS_BENCH_CHURN:-100}
BIG_SIZES=${MVDNS_BENCH_BIG_SIZES:-100 1000 10000 50000}
W="$ROOT/target/bench"
mkdir -p "$W"
started=$(date +%s)

"$ROOT/hack/deps.sh"
PLOT_PYTHON=$(plot_python)
# Each part builds the release binaries it runs (a no-op after the first).

log "part 1 of 3: query throughput (hack/bench-dns.sh, ${SECONDS_PER_RUN} s per run)"
"$ROOT/hack/bench-dns.sh" "$SECONDS_PER_RUN" | tee "$W/dns-table.md"

log "part 2 of 3: convergence, resources and churn at: $SIZES pods"
printf 'pods\tpath\tflips\tp50_ms\tp90_ms\tp99_ms\tmax_ms\tstatus_writes\n' >"$W/convergence.tsv"
: >"$W/resources.txt"
: >"$W/churn.txt"
for size in $SIZES; do
  log "convergence with $size background pods ($FLIPS flips, then $CHURN flips/s of churn for 10 s)"
  "$ROOT/hack/bench-convergence.sh" "$size" "$FLIPS" "$CHURN" | tee "$W/convergence-$size.txt"
  # RESULT lines are "RESULT kind key=value ...".
  awk '$1 == "RESULT" && $2 == "convergence" {
         for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
         print v["pods"] "\t" v["path"] "\t" v["flips"] "\t" v["p50_ms"] "\t" v["p90_ms"] "\t" v["p99_ms"] "\t" v["max_ms"] "\t" v["status_writes"]
       }' "$W/convergence-$size.txt" >>"$W/convergence.tsv"
  grep '^RESULT resources' "$W/convergence-$size.txt" >>"$W/resources.txt" || die "no resource figures at $size pods"
  grep '^RESULT churn' "$W/convergence-$size.txt" >>"$W/churn.txt" || true
done

log "part 3 of 3: one name over $BIG_SIZES pods (hack/bench-big-name.sh)"
"$ROOT/hack/bench-big-name.sh" "$BIG_SIZES" 100 "$CHURN"
grep '^RESULT bigname' "$W/big-name.txt" >"$W/big-name-results.txt" || die "no big-name figures"
grep '^RESULT bigchurn' "$W/big-name.txt" >"$W/big-churn-results.txt" || true

"$PLOT_PYTHON" "$ROOT/hack/plot-bench.py" convergence "$W/convergence.tsv" "$ROOT/docs/bench-convergence.png" \
  || die "plotting failed"

# kv FILE KEY...: one markdown row per RESULT line, the values of KEY in order.
kv() {
  local file=$1; shift
  awk -v keys="$*" '{
      for (i = 3; i <= NF; i++) { split($i, p, "="); v[p[1]] = p[2] }
      n = split(keys, k, " "); row = "|"
      for (j = 1; j <= n; j++) row = row " " v[k[j]] " |"
      print row
    }' "$file"
}
{
  echo
  echo "## mvdns benchmark suite, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
  echo
  echo "### Query throughput (dnsperf; server on CPU 0, dnsperf on CPU 1)"
  echo
  cat "$W/dns-table.md"
  echo
  echo "### Convergence: readiness change -> every DNS answer changed (ms)"
  echo
  echo "| pods | path | flips | p50 | p90 | p99 | max | status writes |"
  echo "|------|------|-------|-----|-----|-----|-----|---------------|"
  tail -n +2 "$W/convergence.tsv" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
  echo
  echo "### Memory and CPU at each size (after the flips)"
  echo
  echo "| pods | values served | operator RSS MiB | operator peak MiB | operator CPU s | DNS RSS MiB | DNS peak MiB | DNS CPU s | CoreDNS RSS MiB | status bytes (s0) |"
  echo "|------|---------------|------------------|-------------------|----------------|-------------|--------------|-----------|-----------------|-------------------|"
  kv "$W/resources.txt" pods values_served operator_rss_mib operator_peak_rss_mib operator_cpu_s dns_rss_mib dns_peak_rss_mib dns_cpu_s coredns_rss_mib status_bytes_s0
  echo
  echo "### Churn: readiness flips over the background pods for 10 s"
  echo
  echo "| pods | flips | flips/s | status writes | writes/s | writes per flip | operator CPU % | DNS CPU % | operator RSS MiB |"
  echo "|------|-------|---------|---------------|----------|-----------------|----------------|-----------|------------------|"
  kv "$W/churn.txt" pods flips flips_per_s status_writes writes_per_s writes_per_flip operator_cpu_pct dns_cpu_pct operator_rss_mib
  echo
  echo "### One name over many pods: a flip of one value -> every replica's answer (ms), beside CoreDNS's headless Service"
  echo
  echo "| pods | feed | flips | mvdns p50 | mvdns p99 | CoreDNS p50 | CoreDNS p99 | bytes written per flip | watch bytes per flip | EndpointSlice bytes per flip | operator CPU ms/flip | DNS CPU ms/flip | CoreDNS CPU ms/flip | operator RSS MiB | DNS RSS MiB | CoreDNS RSS MiB | status bytes | slices |"
  echo "|------|------|-------|-----------|-----------|-------------|-------------|------------------------|----------------------|------------------------------|----------------------|-----------------|---------------------|------------------|-------------|-----------------|--------------|--------|"
  kv "$W/big-name-results.txt" pods feed flips mvdns_p50_ms mvdns_p99_ms coredns_p50_ms coredns_p99_ms bytes_per_flip watch_bytes_per_flip endpointslice_bytes_per_flip operator_cpu_ms_per_flip dns_cpu_ms_per_flip coredns_cpu_ms_per_flip operator_rss_mib dns_rss_mib coredns_rss_mib status_bytes slices
  echo
  echo "### One name over many pods: churn of unready pods turning Ready"
  echo
  echo "| pods | feed | changes | changes/s | mvdns writes | bytes/s written | bytes per change | EndpointSlice bytes/s | operator CPU % | DNS CPU % | CoreDNS CPU % |"
  echo "|------|------|---------|-----------|--------------|-----------------|------------------|-----------------------|----------------|-----------|---------------|"
  kv "$W/big-churn-results.txt" pods feed changes changes_per_s writes bytes_per_s bytes_per_change endpointslice_bytes_per_s operator_cpu_pct dns_cpu_pct coredns_cpu_pct
  echo
  echo "Charts: docs/bench-dns-qps.png, docs/bench-convergence.png. Raw: $W."
} | tee "$W/summary.md"
log "suite done in $(( $(date +%s) - started ))s; table in $W/summary.md"
