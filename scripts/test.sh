#!/usr/bin/env bash
# The whole test suite, as root: what .ci/run runs (after fmt and clippy),
# the README's test command. Extra arguments go to the test runner.
#
#   scripts/test.sh                 # everything, ignored tests included
#   scripts/test.sh air_lab         # only the tests whose names match
#
# With cargo-nextest (on these machines), every test runs in its own
# process, two at a time across test binaries (.config/nextest.toml),
# except the air lab, which runs alone (it asserts BLE timings); then the
# doc tests, which nextest does not run.
# Without it, `cargo test`, one test binary after another.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --run-ignored all "$@"
  if [ $# -eq 0 ]; then cargo test --locked --doc; fi
else
  cargo test --locked -- --include-ignored "$@"
fi
