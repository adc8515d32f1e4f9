#!/usr/bin/env bash
# The whole test suite: `cargo test --workspace --no-fail-fast` (arguments are passed on), then the list of
# tests that skipped because a server or tool was missing — outside CI such a test passes
# after printing a banner the harness hides, so it is listed here, never a silent `ok`.
# Under CI=true a missing server fails its test instead (invar-testkit `skip`).
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/invar-target}"
ledger=$(mktemp)
trap 'rm -f "$ledger"' EXIT
INVAR_SKIP_LEDGER="$ledger" cargo test --workspace --no-fail-fast "$@"
rc=$?
if [ -s "$ledger" ]; then
  n=$(sort -u "$ledger" | wc -l)
  echo
  echo "SKIPPED: $n test(s) could not reach what they test (their 'ok' above proves nothing):"
  sort -u "$ledger" | sed 's/^/  - /'
  echo "Start the servers with: bash scripts/ensure-services.sh"
else
  echo "No test skipped: every server and tool the tests need was there."
fi
exit $rc
