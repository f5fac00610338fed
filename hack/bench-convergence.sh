#!/usr/bin/env bash
# Convergence of mvdns against CoreDNS's kubernetes plugin on the local control plane:
# readiness change -> every DNS answer changed, p50/p90/p99 over many flips, with PODS
# background pods in 100 record sets; then the processes' memory and CPU at that size
# and a churn of CHURN readiness flips per second (status writes per second). A
# measurement, not a test; see BENCHMARKS.md and tests/examples/convergence.rs.
#   hack/bench-convergence.sh [PODS] [FLIPS] [CHURN]        default 1000 400 100
LOG_TAG=bench
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/hack/deps.sh"
"$ROOT/hack/testenv.sh" up
eval "$("$ROOT/hack/testenv.sh" env)"
MVDNS_COREDNS=$("$ROOT/hack/coredns-build.sh")
export MVDNS_COREDNS
log "building the release binaries and the convergence benchmark"
cargo_with_progress "release build" build --release --locked -p mvdns-operator -p mvdns-server
cargo_with_progress "release build of the benchmark" build --release --locked -p mvdns-tests --example convergence
# The operator and the DNS replicas run as release processes, like CoreDNS.
MVDNS_BIN_DIR="$TARGET/release" "$TARGET/release/examples/convergence" "${1:-1000}" "${2:-400}" "${3:-100}"
