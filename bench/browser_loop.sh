#!/usr/bin/env bash
# Every browser test (tests/test_*browser*.py) N times in a row (default 20), on both databases, as CI runs them:
# prints each round's result and the totals. A test that fails one round in twenty is a
# failed test (docs/reliability.md, "Browser tests, round after round").
#   bench/browser_loop.sh [ROUNDS] [pytest args…]
#   bench/browser_loop.sh 20
#   bench/browser_loop.sh 5 -k no_reply
set -uo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-20}"
shift || true
tests=(tests/test_*browser*.py)
py=".venv/bin/python"
log_dir="$(mktemp -d -t carecall-browser-loop-XXXXXX)"
passed_rounds=0
failed_rounds=0
tests_passed=0
tests_failed=0
start=$(date +%s)
echo "browser loop: ${rounds} rounds of ${tests[*]} $*"
for ((i = 1; i <= rounds; i++)); do
  log="${log_dir}/round-${i}.log"
  t0=$(date +%s)
  "$py" -m pytest -q -p no:cacheprovider -rf "${tests[@]}" "$@" >"$log" 2>&1
  rc=$?
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
  p=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
  f=$(grep -oE '[0-9]+ (failed|error)' <<<"$summary" | grep -oE '[0-9]+' | paste -sd+ - | bc 2>/dev/null || echo 0)
  tests_passed=$((tests_passed + ${p:-0}))
  tests_failed=$((tests_failed + ${f:-0}))
  if [[ $rc -eq 0 ]]; then
    passed_rounds=$((passed_rounds + 1))
    echo "round ${i}/${rounds}: PASS  ${summary}  ($(( $(date +%s) - t0 )) s)"
  else
    failed_rounds=$((failed_rounds + 1))
    echo "round ${i}/${rounds}: FAIL  ${summary}  ($(( $(date +%s) - t0 )) s, log ${log})"
    grep -E '^FAILED|^ERROR' "$log" | sed 's/^/    /'
  fi
done
echo "browser loop: ${passed_rounds}/${rounds} rounds passed, ${failed_rounds} failed;" \
     "tests ${tests_passed} passed, ${tests_failed} failed; $(( $(date +%s) - start )) s in all"
[[ $failed_rounds -eq 0 ]]
