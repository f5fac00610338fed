#!/usr/bin/env bash
# Builds Tilt $TILT_VERSION (tools/versions.env) from the Go module proxy into a cache
# directory keyed by version and prints the binary's path:
#   hack/tilt-build.sh           # -> ~/.cache/mvdns/tools/tilt-v0.33.0/tilt
#   hack/tilt-build.sh --cached  # prints the path only if already built, else fails at once
# hack/chart-check.sh uses it to evaluate the Tiltfile (`tilt alpha tiltfile-result`).
#
# Why not `go install github.com/tilt-dev/tilt/cmd/tilt@VERSION`: Tilt's go.mod has replace
# directives (its forks of k8s.io/apimachinery, pkg/browser...), which `go install pkg@v`
# refuses. So the module is downloaded and built as the main module from its directory,
# where the replaces apply; -mod=mod because its vendor/ is not complete for Go 1.26.
# Why $TILT_VERSION and not the newest: the checksum database (sum.golang.org, reached
# through the module proxy here) must vouch for the module; for the newest versions on
# the proxy it does not answer (404), and we do not turn verification off (GONOSUMDB).
LOG_TAG=tilt-build
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="$CACHE/tools/tilt-$TILT_VERSION"
if [ -x "$BIN/tilt" ]; then echo "$BIN/tilt"; exit 0; fi
[ "${1:-}" != --cached ] || die "tilt $TILT_VERSION is not built yet (hack/tilt-build.sh builds it)"

command -v go >/dev/null || die "Go is required to build Tilt (the machine's Go 1.26 is enough)"
command -v gcc >/dev/null || die "Tilt needs cgo (go-tree-sitter): install gcc (apt-get install gcc)"
start=$(date +%s)
log "first build of Tilt $TILT_VERSION into $BIN (about 11 minutes on 2 cores; later runs reuse it)"
log "downloading github.com/tilt-dev/tilt@$TILT_VERSION and its dependencies"
dir=$(GOFLAGS=-mod=mod go_module_dir "github.com/tilt-dev/tilt@$TILT_VERSION") \
  || die "cannot download github.com/tilt-dev/tilt@$TILT_VERSION from $(go env GOPROXY)"
rm -rf "$BIN.partial"; mkdir -p "$BIN.partial"
(
  cd "$dir"
  export GOFLAGS="$GOFLAGS -mod=mod"
  # Tilt parses Dockerfiles/Starlark with go-tree-sitter, which is cgo: needs a C compiler.
  export CGO_ENABLED=1
  with_progress plain "go mod download (every module of the build, a minute or two on a cold cache)" 0 go mod download
  go_build_with_progress "$BIN.partial" "-s -w -X main.version=${TILT_VERSION#v}" ./cmd/tilt
) || die "Tilt build failed"
"$BIN.partial/tilt" version >/dev/null || die "the built tilt does not run"
rm -rf "$BIN"; mv "$BIN.partial" "$BIN"
log "done in $(( $(date +%s) - start ))s: $BIN/tilt ($(du -h "$BIN/tilt" | cut -f1)), $("$BIN/tilt" version)"
echo "$BIN/tilt"
