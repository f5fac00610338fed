#!/usr/bin/env bash
# Builds CoreDNS $COREDNS_VERSION (tools/versions.env) from the Go module proxy into a cache
# directory keyed by version and prints the binary's path:
#   hack/coredns-build.sh        # -> ~/.cache/mvdns/tools/coredns-v1.14.7/coredns
# A cached binary is reused at once without touching Go. The CoreDNS e2e test
# (tests/tests/coredns.rs) runs it; it reads MVDNS_COREDNS, else calls this script.
#
# The module is built like `go install github.com/coredns/coredns@$COREDNS_VERSION` (its
# main package is the module root and its plugin tables are committed, so no go generate),
# but from the downloaded module directory so that go_build_with_progress can count the
# package graph and print a percentage: the first build compiles ~1,000 packages.
LOG_TAG=coredns-build
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="$CACHE/tools/coredns-$COREDNS_VERSION"
if [ -x "$BIN/coredns" ]; then echo "$BIN/coredns"; exit 0; fi

command -v go >/dev/null || die "Go is required to build CoreDNS (the machine's Go 1.26 is enough)"
start=$(date +%s)
log "first build of CoreDNS $COREDNS_VERSION into $BIN (a few minutes on 2 cores; later runs reuse it)"
log "downloading github.com/coredns/coredns@$COREDNS_VERSION and its dependencies"
dir=$(go_module_dir "github.com/coredns/coredns@$COREDNS_VERSION") \
  || die "cannot download github.com/coredns/coredns@$COREDNS_VERSION from $(go env GOPROXY)"
rm -rf "$BIN.partial"; mkdir -p "$BIN.partial"
(
  cd "$dir"
  # The module cache is read-only and its go.sum is complete: nothing may be rewritten.
  export GOFLAGS="$GOFLAGS -mod=readonly"
  with_progress plain "go mod download (every module of the build, a minute or two on a cold cache)" 0 go mod download
  go_build_with_progress "$BIN.partial" "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" .
) || die "CoreDNS build failed"
version=$("$BIN.partial/coredns" -version) || die "the built coredns does not run"
matches "$version" "CoreDNS-${COREDNS_VERSION#v}" \
  || die "the built coredns does not report version ${COREDNS_VERSION#v}: $version"
rm -rf "$BIN"; mv "$BIN.partial" "$BIN"
log "done in $(( $(date +%s) - start ))s: $BIN/coredns ($(du -h "$BIN/coredns" | cut -f1))"
echo "$BIN/coredns"
