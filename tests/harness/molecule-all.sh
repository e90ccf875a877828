#!/usr/bin/env bash
# Runs `molecule test` for every scenario under molecule/ except `real` (delegated
# to real hosts, not for CI). Scenario names on the command line restrict the run.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
if [ $# -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for d in molecule/*/; do
    s=$(basename "$d")
    [ "$s" = real ] && continue
    [ -f "$d/molecule.yml" ] && scenarios+=("$s")
  done
fi
[ ${#scenarios[@]} -gt 0 ] || { echo "molecule: no scenarios"; exit 0; }
failed=()
for s in "${scenarios[@]}"; do
  echo "=== molecule test -s $s"
  if ! molecule test -s "$s"; then failed+=("$s"); fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "molecule: FAILED scenarios: ${failed[*]}" >&2
  exit 1
fi
echo "molecule: ${#scenarios[@]} scenarios passed: ${scenarios[*]}"
