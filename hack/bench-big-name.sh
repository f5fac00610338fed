#!/usr/bin/env bash
# One name over many pods (tests/examples/big_name.rs): flip-to-answer on every replica
# of mvdns and of CoreDNS's headless-Service path, bytes written per flip, CPU per flip,
# memory, and a churn, at each size; the slices feed and, up to STATUS_FEED_MAX pods, the
# status feed before it (--max-status-values above the size). A measurement, not a test.
#   hack/bench-big-name.sh [SIZES] [FLIPS] [CHURN]     default "100 1000 10000 50000" 100 100
# It runs on a control plane of its own (target/bench-plane, ports 14379/18443) with one
# KWOK node per 4,000 pods of the largest size (each node hands out a /20 of pod
# addresses), started here and stopped here unless it was already up.
LOG_TAG=bench
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZES=${1:-100 1000 10000 50000}
FLIPS=${2:-100}
CHURN=${3:-100}
# The status feed rewrites the whole set on every change: ~3 s a flip at 10,000 values,
# and past ~15,000 etcd refuses the write (1.5 MiB), so it is measured up to here only.
STATUS_FEED_MAX=${MVDNS_BENCH_STATUS_FEED_MAX:-10000}
W="$ROOT/target/bench"
mkdir -p "$W"

largest=0
for size in $SIZES; do [ "$size" -gt "$largest" ] && largest=$size; done
export MVDNS_TESTENV_DIR="$ROOT/target/bench-plane" MVDNS_ETCD_PORT=14379 MVDNS_API_PORT=18443
export MVDNS_KWOK_NODES=$(( largest / 4000 + 1 ))
[ "$MVDNS_KWOK_NODES" -ge 3 ] || MVDNS_KWOK_NODES=3

"$ROOT/hack/deps.sh"
MVDNS_COREDNS=$("$ROOT/hack/coredns-build.sh")
export MVDNS_COREDNS
log "building the release binaries and the big-name benchmark"
cargo_with_progress "release build" build --release --locked -p mvdns-operator -p mvdns-server
cargo_with_progress "release build of the benchmark" build --release --locked -p mvdns-tests --example big_name

log "a control plane for the big names ($MVDNS_KWOK_NODES KWOK nodes, in $MVDNS_TESTENV_DIR)"
plane=$("$ROOT/hack/testenv.sh" acquire)
cleanup() { "$ROOT/hack/testenv.sh" release "$plane"; }
trap cleanup EXIT

: >"$W/big-name.txt"
run() { # run PODS FLIPS MAX_STATUS_VALUES
  log "one name over $1 pods, $2 flips, --max-status-values $3, then $CHURN changes/s"
  MVDNS_BIN_DIR="$TARGET/release" "$TARGET/release/examples/big_name" "$1" "$2" "$CHURN" "$3" | tee -a "$W/big-name.txt"
}
for size in $SIZES; do
  run "$size" "$FLIPS" 100
  if [ "$size" -gt 100 ] && [ "$size" -le "$STATUS_FEED_MAX" ]; then
    # Fewer flips: each one rewrites the whole set.
    run "$size" $(( FLIPS < 30 ? FLIPS : 30 )) $(( size + 1 ))
  fi
done
log "big-name runs done; RESULT lines in $W/big-name.txt"
