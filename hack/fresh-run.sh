#!/usr/bin/env bash
# The README's two quick-start commands as a new user runs them: a clean clone of HEAD, with
# empty caches (MVDNS_CACHE, GOCACHE, GOMODCACHE, CARGO_HOME's registry, CARGO_TARGET_DIR;
# the toolchains stay), `hack/demo.sh` and then `hack/test.sh`. Every line of their output
# is time-stamped into a log; the summary gives each command's wall time, exit status and
# the longest gap between two lines. Takes an hour or more on 2 cores. Needs the ports of
# the control plane and the demo free: stop your own control plane first.
#   hack/fresh-run.sh [DIR]      default /tmp/mvdns-fresh (emptied first)
LOG_TAG=fresh-run
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

W=${1:-/tmp/mvdns-fresh}
case $W in /tmp/* | "$ROOT"/target/*) ;; *) die "DIR must be under /tmp or target/ (it is emptied): $W" ;; esac
rm -rf "$W"; mkdir -p "$W"
git clone -q "$ROOT" "$W/clone"
clone=$W/clone
export MVDNS_CACHE=$W/cache GOCACHE=$W/go-build GOMODCACHE=$W/go-mod CARGO_TARGET_DIR=$W/target
# A fresh CARGO_HOME with the machine's rustup toolchains: no crate is downloaded yet.
export CARGO_HOME=$W/cargo-home RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
mkdir -p "$CARGO_HOME"

# stamp LOG: copies stdin to stdout and to LOG with a time stamp per line; at the end,
# appends "longest-gap SECONDS after LINE" to LOG.
stamp() {
  python3 -u -c '
import sys, time
log = open(sys.argv[1], "w")
start = last = time.monotonic(); gap, after = 0.0, ""
for raw in iter(sys.stdin.buffer.readline, b""):
    now = time.monotonic()
    if now - last > gap: gap, after = now - last, prev if last != start else "(start)"
    line = raw.decode(errors="replace").rstrip("\n")
    log.write(f"{now - start:9.1f} {line}\n"); log.flush()
    sys.stdout.write(line + "\n"); sys.stdout.flush()
    last, prev = now, line
log.write(f"longest-gap {gap:.1f}s after: {after}\n")
' "$1"
}

summary=()
for cmd in demo test; do
  log "running hack/$cmd.sh in $clone (log: $W/$cmd.log)"
  t0=$(date +%s)
  status=0
  (cd "$clone" && "hack/$cmd.sh" 2>&1) | stamp "$W/$cmd.log" || status=$?
  wall=$(($(date +%s) - t0))
  gap=$(sed -n 's/^longest-gap //p' "$W/$cmd.log")
  summary+=("hack/$cmd.sh: exit $status, $((wall / 60))m$((wall % 60))s wall, longest gap $gap")
  [ "$status" = 0 ] || break
done
log "stopping the control plane the demo started in $clone"
MVDNS_TESTENV_DIR="$clone/target/testenv" "$clone/hack/testenv.sh" down || true
printf '%s\n' "${summary[@]}" | tee "$W/summary.txt"
