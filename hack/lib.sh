# Shared helpers for the hack/ scripts. Source it; it sets ROOT, CACHE and loads versions.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../tools/versions.env
. "$ROOT/tools/versions.env"
# Heavy builds live outside the clone, keyed by version, so a clean clone reuses them.
CACHE="${MVDNS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mvdns}"
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${LOG_TAG:-mvdns}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# go_build_with_progress OUTDIR LDFLAGS PKG...
# `go build` is silent for minutes on a cold cache; with -v it names each package it
# compiles, which we count against the package graph to print a percentage.
go_build_with_progress() {
  local out=$1 ldflags=$2; shift 2
  local total
  total=$(go list -deps "$@" | wc -l)
  log "compiling $* ($total packages in the graph; cached ones are skipped)"
  go build -v -trimpath -ldflags "$ldflags" -o "$out/" "$@" 2>&1 | awk -v total="$total" -v tag="${LOG_TAG:-mvdns}" '
    /^#|: / { print > "/dev/stderr"; fflush("/dev/stderr"); next }
    { n++; if (n % 100 == 0) { printf("[%s %s] compiled %d of at most %d packages (%d%%)\n", strftime("%H:%M:%S"), tag, n, total, 100*n/total) > "/dev/stderr"; fflush("/dev/stderr") } }
    END { printf("[%s %s] compiled %d packages, linking done\n", strftime("%H:%M:%S"), tag, n) > "/dev/stderr" }'
  return "${PIPESTATUS[0]}"
}

sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
apt_install() { # apt_install PACKAGE...: Debian packages, quietly
  log "installing Debian packages: $*"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >&2
}

# plot_python: prints a Python with matplotlib (for hack/plot-bench.py), from a venv of its
# own under the cache, created on first use from PyPI.
MATPLOTLIB_VERSION=3.10.9
plot_python() {
  local venv="$CACHE/tools/plot-venv"
  if ! "$venv/bin/python" -c "import sys, matplotlib; sys.exit(matplotlib.__version__ != '$MATPLOTLIB_VERSION')" 2>/dev/null; then
    log "creating $venv with matplotlib $MATPLOTLIB_VERSION from PyPI"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      # Debian's python3 has no ensurepip without python3-venv.
      rm -rf "$venv"
      apt_install python3-venv
      /usr/bin/python3 -m venv "$venv" >&2 || die "cannot create a Python venv in $venv"
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION" >&2 \
      || die "cannot install matplotlib $MATPLOTLIB_VERSION from PyPI into $venv"
  fi
  echo "$venv/bin/python"
}
