#!/usr/bin/env bash
# Installs what a fresh machine lacks for the tests and the quick start: Debian
# packages via apt, the Rust toolchain's components. Go and Rust themselves must exist.
LOG_TAG=deps
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null || die "Go 1.26+ is required (https://go.dev/dl)"
command -v cargo >/dev/null || die "Rust 1.88+ is required (https://rustup.rs)"

# command -> Debian package (python3: JSON and image helpers in hack/; gcc: Tilt needs cgo;
# and the linter the test command runs over hack/ and .ci/; the real node, hack/node.sh:
# containerd, runc, the CNI plugins, nft, ip, busybox and file for the images; the zone
# checker of tests/tests/conformance.rs: zonemaster-cli)
declare -A packages=([openssl]=openssl [dig]=dnsutils [curl]=curl [bc]=bc [python3]=python3 [gcc]=gcc
  [shellcheck]=shellcheck [containerd]=containerd [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
  [nft]=nftables [ip]=iproute2 [/bin/busybox]=busybox-static [file]=file
  [zonemaster-cli]=zonemaster-cli)
missing=()
for cmd in "${!packages[@]}"; do command -v "$cmd" >/dev/null || missing+=("${packages[$cmd]}"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
