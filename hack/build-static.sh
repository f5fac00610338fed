#!/usr/bin/env bash
# Builds the two release binaries statically linked against glibc, for the images:
#   hack/build-static.sh        prints the directory that holds mvdns-operator and mvdns-server,
#                               stripped (the images' copies; the unstripped ones, with line
#                               tables for profiles, stay in the target directory)
#
# Why glibc with crt-static and not musl: the musl target cannot be installed on these
# machines (rustup reaches no mirror), and glibc's static libc.a comes with libc6-dev,
# already here. Since glibc 2.34 the files and dns NSS modules live inside libc itself, so
# a static binary resolves host names (the operator's probes of names) without
# libnss_*.so in the image; nothing here calls dlopen. The image stays one file over an
# empty base (docs/operations.md gives the sizes).
#
# --target is explicit so that RUSTFLAGS applies to the binaries only, not to build scripts
# and proc macros (which must stay dynamic).
LOG_TAG=build-static
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

release="$TARGET/x86_64-unknown-linux-gnu/release"
out="$release/stripped"
RUSTFLAGS="-C target-feature=+crt-static" cargo_with_progress "building the static release binaries" \
  build --release --locked --target x86_64-unknown-linux-gnu -p mvdns-operator -p mvdns-server
mkdir -p "$out"
for name in mvdns-operator mvdns-server; do
  [ "$out/$name" -nt "$release/$name" ] || strip -o "$out/$name" "$release/$name"
  info=$(file -L "$out/$name")
  matches "$info" 'statically linked|static-pie' || die "$out/$name is not statically linked: $info"
done
echo "$out"
