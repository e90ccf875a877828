#!/usr/bin/env bash
# Runs `molecule test` for every scenario under molecule/ except `real` (delegated
# to real hosts, not for CI) and those named in $LABHUB_MOLECULE_SKIP. Scenario names on the
# command line restrict the run.
# Ends with a table of minutes per scenario; when $LABHUB_STAGE_ROWS names a file
# (tests/harness/stages.sh sets it), the rows are appended there for `make test`'s table.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
# Modules run on the controller (delegate_to localhost) keep the bytecode of what they import from
# their AnsiballZ zips (tests/harness/zipimport_cache/sitecustomize.py; tests/conftest.py does the
# same for pytest). Modules run in the node containers are untouched: their Python sees none of this.
export LABHUB_ZIPIMPORT_CACHE=${LABHUB_ZIPIMPORT_CACHE:-$top/.cache/zipimport}
export PYTHONPATH=$top/tests/harness/zipimport_cache${PYTHONPATH:+:$PYTHONPATH}
if [ $# -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for d in molecule/*/; do
    s=$(basename "$d")
    [ "$s" = real ] && continue
    # LABHUB_MOLECULE_SKIP: scenarios to leave out (e.g. when another process runs them)
    [[ " ${LABHUB_MOLECULE_SKIP:-} " == *" $s "* ]] && continue
    [ -f "$d/molecule.yml" ] && scenarios+=("$s")
  done
fi
[ ${#scenarios[@]} -gt 0 ] || { echo "molecule: no scenarios"; exit 0; }
failed=()
rows=()
for s in "${scenarios[@]}"; do
  echo "=== molecule test -s $s"
  start=$(date +%s)
  log=$(mktemp /tmp/labhub-molecule-"$s".XXXXXX)
  if molecule test -s "$s" 2>&1 | tee "$log"; then result=passed; else result=FAILED; fi
  # Every scenario converges, so its test_sequence has a side_effect step after idempotence: check
  # mode on the converged hosts (molecule/shared/check_converged.yml, set in
  # .config/molecule/config.yml). Molecule passes a step whose playbook is missing, so make sure
  # it really ran.
  # (grep -c reads to the end: grep -q would stop early, and under pipefail sed's SIGPIPE fails the test)
  if [ "$result" = passed ] && [ "$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -c 'side_effect: Executed: Successful')" -eq 0 ]; then
    echo "molecule: $s: no successful side_effect step (check mode on the converged hosts must predict no change)" >&2
    result=FAILED
  fi
  rm -f "$log"
  [ "$result" = passed ] || failed+=("$s")
  min=$(awk -v s=$(( $(date +%s) - start )) 'BEGIN{printf "%.1f", s/60}')
  rows+=("molecule/$s"$'\t'"$min"$'\t'"$result")
done
echo
echo "molecule: minutes per scenario"
printf '  %-24s %8s  %s\n' SCENARIO MINUTES RESULT
for r in "${rows[@]}"; do
  IFS=$'\t' read -r n m res <<<"$r"
  printf '  %-24s %8s  %s\n' "$n" "$m" "$res"
done
if [ -n "${LABHUB_STAGE_ROWS:-}" ]; then
  printf '%s\n' "${rows[@]}" >>"$LABHUB_STAGE_ROWS"
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "molecule: FAILED scenarios: ${failed[*]}" >&2
  exit 1
fi
echo "molecule: ${#scenarios[@]} scenarios passed: ${scenarios[*]}"
