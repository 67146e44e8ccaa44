#!/usr/bin/env bash
# Runs every fuzz target briefly (default 10 s each, in one process = one core, which is what
# -jobs=1 amounts to without its fork-and-log-file detour: the machine is shared) and exits
# non-zero on the first crash, timeout or out-of-memory, leaving the input in fuzz/artifacts/<target>/.
# A build failure also fails (loudly): a fuzz run that cannot build is not a pass.
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, -Cpasses=sancov-module); this machine
# has only the stable toolchain, so we set RUSTC_BOOTSTRAP=1, which lets stable rustc accept them.
#
#   fuzz/run-brief.sh            # 10 s per target
#   FUZZ_SECONDS=300 fuzz/run-brief.sh xsd_validate
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
SECONDS_EACH="${FUZZ_SECONDS:-10}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(xml_reader xsd_validate model_parse cms_verify amqp10)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "run-brief: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
  exit 2
fi
./seed.sh
# Build first so a build failure is reported as such, not as a crash. (Sanitizer: address;
# debug assertions on, so arithmetic overflow fires as a crash too.)
: >build.log
for t in "${TARGETS[@]}"; do
  if ! cargo fuzz build --debug-assertions "$t" >>build.log 2>&1; then
    echo "run-brief: building fuzz target $t FAILED (see fuzz/build.log):" >&2
    tail -30 build.log >&2
    exit 3
  fi
done
status=0
for t in "${TARGETS[@]}"; do
  echo "run-brief: $t for ${SECONDS_EACH}s"
  mkdir -p "artifacts/$t"
  # -rss_limit_mb bounds memory per input; -timeout flags a single input taking > 10 s.
  if ! cargo fuzz run --debug-assertions "$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 2>"artifacts/$t.log"; then
    echo "run-brief: $t FAILED — input(s) in fuzz/artifacts/$t/:" >&2
    grep -E "ERROR|panicked|SUMMARY|Test unit written" "artifacts/$t.log" | head -20 >&2
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec" "artifacts/$t.log" | tr '\n' ' '; echo
done
exit $status
