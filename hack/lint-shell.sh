#!/usr/bin/env bash
# The shell scripts' lint, part of hack/test.sh:
# 1. shellcheck over hack/ and .ci/ (.shellcheckrc makes it follow the sourced hack/lib.sh;
#    no check is turned off wholesale);
# 2. no pipeline that ends in a reader which may exit before its writer is done (`grep -q`,
#    `grep -m`, `head`): under pipefail the writer's SIGPIPE fails the pipeline at random.
#    Capture the output and test it with `matches` (hack/lib.sh) instead.
LOG_TAG=lint-shell
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scripts=("$ROOT"/hack/*.sh "$ROOT/.ci/run")
log "shellcheck over ${#scripts[@]} scripts in hack/ and .ci/"
shellcheck -x "${scripts[@]}"

early_exit='\|[[:space:]]*(head|grep[[:space:]]+(-[a-zA-Z]*[qm][0-9]*|--quiet|--max-count[=0-9]*))([[:space:]]|$)'
found=$(grep -nE -- "$early_exit" "${scripts[@]}" "$ROOT"/charts/mvdns/templates/tests/*.yaml || true)
[ -z "$found" ] || die "pipelines into a reader that exits early (use matches, hack/lib.sh):
$found"
log "no pipeline ends in a reader that exits early"
