#!/usr/bin/env bash
# Dependency policy (deny.toml): licences, bans and sources, with cargo-deny installed
# once from crates.io into ~/.cache/mvdns/tools/cargo-deny-<version> (a few minutes).
# Advisories are not checked here: RustSec's database is a git repository on GitHub,
# which these machines cannot reach; `hack/deny.sh advisories` runs that check where it can.
#   hack/deny.sh [CHECKS...]        default: licenses bans sources
LOG_TAG=deny
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$ROOT/tools/versions.env"

DIR="$CACHE/tools/cargo-deny-$CARGO_DENY_VERSION"
if [ ! -x "$DIR/bin/cargo-deny" ]; then
  log "installing cargo-deny $CARGO_DENY_VERSION from crates.io into $DIR (first run only, about 5 minutes on 2 cores)"
  with_progress cargo "cargo install cargo-deny" 0 \
    cargo install --locked cargo-deny --version "$CARGO_DENY_VERSION" --root "$DIR.partial"
  rm -rf "$DIR" && mv "$DIR.partial" "$DIR"
fi
cd "$ROOT"
checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(licenses bans sources)
log "cargo deny check ${checks[*]}"
"$DIR/bin/cargo-deny" check "${checks[@]}"
