#!/usr/bin/env bash
# `make unit`: the collection's pytest suite as two pytest processes side by side, since most of
# their time is waiting (ansible-playbook runs, control planes starting, KWOK, timeouts under
# test) rather than CPU: tests/simulator (the simulated MicroK8s nodes on real control planes) and
# everything else under tests/ (modules, schemas, manifests, containerd, the kube sites); the
# first with two xdist workers (a test module per worker: 16.7 min alone on the quiet 2-core VM,
# against 40 min serially beside the rest under load). Each has
# its own --basetemp; their outputs are printed one after the other when both are done. Adds one
# row per process to `make test`'s table ($LABHUB_STAGE_ROWS) and its 15 slowest tests to the log. Extra arguments go to both.
# $LABHUB_UNIT_NICE (default 0) runs both at that niceness: `make test` sets 10, so the other lane's
# Molecule scenarios (one task after another, each a short burst of CPU: latency-bound) are served
# first and these many parallel processes take the CPU they leave (measured alone: that lane used
# 1.0 core for 22 minutes, pytest 1.8 cores for 25; side by side at equal priority 48 minutes).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
tmp=$(mktemp -d /tmp/labhub-unit.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
run() {  # name, pytest arguments...
  local name=$1; shift
  local start; start=$(date +%s)
  if nice -n "${LABHUB_UNIT_NICE:-0}" pytest -q --durations=15 --basetemp="$tmp/$name" "$@" >"$tmp/$name.log" 2>&1; then
    echo passed >"$tmp/$name.result"
  else
    echo FAILED >"$tmp/$name.result"
  fi
  echo $(( $(date +%s) - start )) >"$tmp/$name.seconds"
}
run simulator -n 2 --dist loadfile tests/simulator "$@" &
sim=$!
run rest tests --ignore=tests/simulator "$@" &
rest=$!
wait "$sim" "$rest"
status=0
for name in rest simulator; do
  label="pytest tests/ (rest)"; [ "$name" = simulator ] && label="pytest tests/simulator"
  echo "=== $label"
  cat "$tmp/$name.log"
  result=$(cat "$tmp/$name.result")
  [ "$result" = passed ] || status=1
  if [ -n "${LABHUB_STAGE_ROWS:-}" ]; then
    printf '%s\t%s\t%s\n' "$label" "$(awk -v s="$(cat "$tmp/$name.seconds")" 'BEGIN{printf "%.1f", s/60}')" "$result" \
      >>"$LABHUB_STAGE_ROWS"
  fi
done
exit $status
