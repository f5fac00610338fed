# shellcheck shell=bash
# Shared helpers for the hack/ scripts. Source it; it sets ROOT, CACHE and loads versions.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../tools/versions.env
. "$ROOT/tools/versions.env"
# Heavy builds live outside the clone, keyed by version, so a clean clone reuses them.
CACHE="${MVDNS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mvdns}"
# Where cargo puts the binaries (CARGO_TARGET_DIR may move it out of the clone).
# shellcheck disable=SC2034 # used by the scripts that source this file
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${LOG_TAG:-mvdns}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# matches TEXT ERE: whether a line of TEXT matches ERE. Capture a command's output first and
# test it here: under pipefail, a pipe from cmd into `grep -q` fails at random: grep exits at the
# first match and cmd, still writing, dies of SIGPIPE (exit 141).
matches() { grep -Eq -- "$2" <<<"$1"; }

# with_progress KIND WHAT TOTAL CMD...: runs CMD (stderr joined to stdout) and reports on it on
# stderr, so that no step is silent for minutes and a script's own stdout stays clean:
#   KIND go:    the lines of `go build -v`/`go install -v` that name a package are counted
#   KIND cargo: cargo's "Compiling", "Downloaded" and "Installing" lines are counted
#   KIND plain: nothing is counted; every line is shown
# Counted lines print a count every 10% of TOTAL (0: unknown, then every 50); every other
# line passes through (errors, warnings, test results). When CMD has been quiet for 20 s, a
# line says what it is still doing and for how long. Returns CMD's exit status. The reader
# always reads to the end, so CMD never dies of SIGPIPE.
with_progress() {
  local kind=$1 what=$2 total=$3 status=0; shift 3
  "$@" 2>&1 | progress_filter "$kind" "$what" "$total" || status=$?
  return "$status"
}

progress_filter() { # KIND WHAT TOTAL, see with_progress
  local kind=$1 what=$2 total=$3 line rc n=0 last="" unit step wait quiet=20
  local t0=$SECONDS shown=$SECONDS # shown: when this filter last printed a line
  step=$((total > 0 ? (total + 9) / 10 : 50))
  while :; do
    wait=$((quiet - (SECONDS - shown)))
    [ "$wait" -ge 1 ] || wait=1
    rc=0
    IFS= read -r -t "$wait" line || rc=$?
    if [ "$rc" -gt 128 ]; then # nothing arrived, and nothing was shown for $quiet seconds
      if [ "$kind" = plain ]; then
        log "$what: still at work after $((SECONDS - t0))s${last:+ (last line: $last)}"
      else
        log "$what: still at work after $((SECONDS - t0))s ($(progress_count "$n" "$total") done${last:+, last: $last})"
      fi
      shown=$SECONDS
      continue
    fi
    [ "$rc" = 0 ] || [ -n "$line" ] || break # end of input
    if progress_unit "$kind" "$line"; then
      n=$((n + 1)); last=$unit
      if [ $((n % step)) = 0 ] || [ $((SECONDS - shown)) -ge "$quiet" ]; then
        log "$what: $(progress_count "$n" "$total") done, last: $last"
        shown=$SECONDS
      fi
    else
      printf '%s\n' "$line" >&2
      shown=$SECONDS
      [ "$kind" != plain ] || [ -z "$line" ] || last=${line:0:100}
    fi
    [ "$rc" = 0 ] || break
  done
  if [ "$kind" = plain ]; then log "$what: ended after $((SECONDS - t0))s"; else log "$what: $n done in $((SECONDS - t0))s"; fi
}

# progress_count N TOTAL: "N of about TOTAL (P%)" while the estimate holds, else "N".
progress_count() {
  if [ "$2" -gt 0 ] && [ "$1" -le "$2" ]; then echo "$1 of about $2 ($((100 * $1 / $2))%)"; else echo "$1"; fi
}

# progress_unit KIND LINE: whether LINE reports one unit of work (sets unit to its name).
progress_unit() {
  unit=""
  case $1:$2 in
    # go -v prints each package path it builds; its errors have "# pkg" headers or "file: msg".
    go:\#* | go:*": "* | go:*" "*) return 1 ;;
    go:?*) unit=$2 ;;
    cargo:*" Compiling "* | cargo:*" Downloaded "* | cargo:*" Installing "*)
      unit=${2#"${2%%[! ]*}"} ;;
    *) return 1 ;;
  esac
}

# go_build_with_progress OUTDIR LDFLAGS PKG...: `go build` is silent for minutes on a cold
# cache; with -v it names each package it compiles, counted against the package graph.
go_build_with_progress() {
  local out=$1 ldflags=$2 total; shift 2
  log "listing the package graph of $* (on a cold cache this downloads its modules, one line each)"
  total=$(go list -deps "$@" | wc -l)
  log "compiling $* ($total packages in the graph; cached ones are skipped)"
  with_progress go "go build" "$total" go build -v -trimpath -ldflags "$ldflags" -o "$out/" "$@"
}

# go_module_dir MODULE@VERSION: downloads the module from the proxy, with a heartbeat (a big
# module takes a while), and prints its directory in the module cache.
go_module_dir() {
  with_progress plain "downloading $1" 0 go mod download "$1" || return 1
  go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error","no Dir")))'
}

# go_install_with_progress GOBIN LDFLAGS MODULE_PATH/PKG VERSION: `go install PKG@VERSION`,
# with a count of packages against the graph listed in the downloaded module.
go_install_with_progress() {
  local gobin=$1 ldflags=$2 pkg=$3 version=$4 module total=0 dir
  module=${pkg%%/cmd/*}
  log "downloading $module@$version and its dependencies"
  if dir=$(go_module_dir "$module@$version"); then
    total=$(cd "$dir" && GOFLAGS="$GOFLAGS -mod=readonly" go list -deps "./${pkg#"$module"/}" | wc -l) || total=0
  fi
  log "compiling $pkg@$version (about $total packages)"
  GOBIN="$gobin" with_progress go "go install" "$total" go install -v -trimpath -ldflags "$ldflags" "$pkg@$version"
}

# cargo_with_progress WHAT CARGO_ARGS...: cargo with a count of crates compiled against the
# workspace's dependency graph (fetched first, with a count of its own). Not `-q`: a cold
# build is ~10 minutes on 2 cores.
cargo_with_progress() {
  local what=$1 total; shift
  with_progress cargo "fetching crates" 0 cargo fetch --locked
  total=$(cargo tree --workspace --locked --offline -e normal,build,dev --prefix none 2>/dev/null \
    | sed 's/ (\*)$//; s/ (proc-macro)$//' | sort -u | wc -l) || total=0
  log "$what (about $total crates to compile on a cold target directory; a few minutes on 2 cores)"
  with_progress cargo "$what" "$total" cargo "$@"
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
