#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz + libFuzzer with AddressSanitizer) of
# every decoder and of the session and transfer state machines; targets in
# fuzz/fuzz_targets, seed corpus in fuzz/corpus (committed).
#
#   scripts/fuzz.sh                 # every target, 10 s each (what CI runs)
#   SECS=3600 scripts/fuzz.sh frames session   # these targets, an hour each
#   KEEP=1 SECS=600 scripts/fuzz.sh # also add what the fuzzer finds to fuzz/corpus
#
# cargo-fuzz needs nightly-only rustc flags (-Z sanitizer, -C passes for
# coverage). Nightly toolchains cannot be downloaded here, but the stable
# toolchain carries the sanitizer runtimes, so RUSTC_BOOTSTRAP=1 lets stable
# accept those flags. This is for the fuzz build only; nothing that ships is
# built this way.
#
# A crash is saved under fuzz/artifacts/TARGET/ and fails the script; replay
# it with `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...`,
# then add a regression test with its bytes.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${SECS:-10}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build
work=$(mktemp -d "${TMPDIR:-/tmp}/airhop-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  # New inputs go to the scratch folder (the first one); the committed
  # corpus is read only, unless KEEP=1.
  dirs=("$work/$t" "corpus/$t")
  [[ ${KEEP:-0} == 1 ]] && dirs=("corpus/$t")
  if cargo fuzz run "$t" "${dirs[@]}" -- -max_total_time="$SECS" -rss_limit_mb=2048 \
      -print_final_stats=1 >"$work/$t.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1 | grep -o '[0-9]*' || echo '?')
    printf 'fuzz %-16s ok    %8s runs in %ss, coverage %s\n' "$t" "$runs" "$SECS" "$cov"
  else
    printf 'fuzz %-16s CRASH (see below)\n' "$t"
    tail -40 "$work/$t.log"
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}; inputs in fuzz/artifacts/"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${SECS}s each, no crash"
