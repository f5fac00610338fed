#!/usr/bin/env bash
# Convergence of mvdns against CoreDNS's kubernetes plugin on the local control plane:
# readiness change -> every DNS answer changed, p50/p90/p99 over many flips, with PODS
# background pods in 100 record sets. A measurement, not a test; see BENCHMARKS.md.
#   hack/bench-convergence.sh [PODS] [FLIPS]        default 1000 100
LOG_TAG=bench
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/hack/deps.sh"
"$ROOT/hack/testenv.sh" up
eval "$("$ROOT/hack/testenv.sh" env)"
MVDNS_COREDNS=$("$ROOT/hack/coredns-build.sh")
export MVDNS_COREDNS
log "building the convergence benchmark (release)"
cargo build --release -q -p mvdns-tests --example convergence
"$ROOT/target/release/examples/convergence" "${1:-1000}" "${2:-100}"
