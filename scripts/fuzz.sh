#!/usr/bin/env bash
# Builds the fuzz targets under fuzz/ and runs each for SECONDS (default 20), one after the
# other, then prints executions and crashes per target. Exit 1 if any target crashed.
#
#   scripts/fuzz.sh 600                  # every target, 10 minutes each
#   scripts/fuzz.sh 600 cel_eval units   # only these
#
# cargo-fuzz (libFuzzer) needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take
# them. New inputs go to $FUZZ_WORK/corpus/TARGET (the committed seeds in fuzz/seeds/TARGET
# are read, never written); crashes to $FUZZ_WORK/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-20}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(config_load cel_eval schedule units redis_pattern api_request)
fi
FUZZ_WORK="${FUZZ_WORK:-$HOME/.cache/invar-fuzz}"
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/invar-fuzz-target}"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi

build_start=$(date +%s)
(cd fuzz && cargo fuzz build -O --target-dir "$FUZZ_TARGET_DIR")
echo "fuzz build: $(( $(date +%s) - build_start )) s"

status=0
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$FUZZ_WORK/corpus/$t" "$FUZZ_WORK/artifacts/$t"
  log="$FUZZ_WORK/$t.log"
  set +e
  (cd fuzz && cargo fuzz run -O --target-dir "$FUZZ_TARGET_DIR" "$t" \
      "$FUZZ_WORK/corpus/$t" "seeds/$t" -- \
      -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="$FUZZ_WORK/artifacts/$t/" -print_final_stats=1) >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  # A slow-unit-* file is an input slower than libFuzzer's report threshold, not a failure
  # (a loaded box makes them); crash-, timeout- (past -timeout), oom- and leak- files fail.
  crashes=$(find "$FUZZ_WORK/artifacts/$t" -type f ! -name 'slow-unit-*' | wc -l)
  slow=$(find "$FUZZ_WORK/artifacts/$t" -type f -name 'slow-unit-*' | wc -l)
  summary+=("$t: ${execs:-?} executions in ${SECONDS_EACH} s, $crashes crash(es), $slow slow unit(s), exit $rc")
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    grep -m5 -E 'panicked|ERROR|SUMMARY' "$log" || true
  fi
done
printf '%s\n' "${summary[@]}"
exit "$status"
