#!/usr/bin/env bash
# The one test command: builds (or reuses) the Kubernetes binaries, starts a private
# control plane unless one is already running, runs every test, stops what it started.
#   hack/test.sh [extra cargo test args]
LOG_TAG="test"
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/hack/deps.sh"
failed=0
"$ROOT/hack/lint-shell.sh" || failed=1
if cargo fmt --version >/dev/null 2>&1; then
  log "checking the Rust formatting (cargo fmt --check, rustfmt.toml)"
  cargo fmt --all -- --check >/dev/null || { log "cargo fmt --all would change files: run it"; failed=1; }
else
  log "NOT CHECKED: the Rust formatting (rustfmt is not installed: rustup component add rustfmt)"
fi
# The tests' own control plane, in a directory and on ports of its own: the demo's plane
# (target/testenv, ports 12379 and 16443) has the demo's operator in it, which would
# reconcile the tests' record sets too. MVDNS_TESTENV_DIR names another plane to use instead.
if [ -z "${MVDNS_TESTENV_DIR:-}" ]; then
  export MVDNS_TESTENV_DIR="$ROOT/target/testenv-test" MVDNS_ETCD_PORT=13379 MVDNS_API_PORT=17443
fi
# A control plane that is already running there is used and left up; one this run starts
# is stopped at exit (tests/tests/testenv.rs checks that rule).
plane=$("$ROOT/hack/testenv.sh" acquire)
cleanup() { "$ROOT/hack/testenv.sh" release "$plane"; }
trap cleanup EXIT

# CoreDNS for the stub-domain test (built once from its Go module, then cached).
MVDNS_COREDNS="$("$ROOT/hack/coredns-build.sh")"
export MVDNS_COREDNS
cargo_with_progress "building the workspace and its tests" build --workspace --all-targets --locked
# The real-node test (tests/tests/realnode.rs) makes images of the static release binaries.
MVDNS_STATIC_DIR=$("$ROOT/hack/build-static.sh")
export MVDNS_STATIC_DIR
log "running all tests against the control plane in $MVDNS_TESTENV_DIR (about 10 minutes)"
# The cluster tests (tests/tests/*.rs) are marked #[ignore], so that `cargo test
# --workspace` passes without a control plane; here they run with all the others.
with_progress plain "cargo test" 0 cargo test --workspace --locked --no-fail-fast "$@" -- --include-ignored || failed=1
log "checking the Helm chart, its schema and Pod Security on the control plane, and the images"
# MVDNS_TILT=build: Tilt is built once (about 11 minutes) and cached, so the Tiltfile is
# evaluated on every run.
KUBECONFIG="$MVDNS_TESTENV_DIR/admin.kubeconfig" MVDNS_TILT=build "$ROOT/hack/chart-check.sh" || failed=1
log "checking the dependencies' licences and sources (deny.toml)"
"$ROOT/hack/deny.sh" || failed=1
[ "$failed" = 0 ] || die "some tests failed (see above)"
log "all tests passed"
