#!/usr/bin/env bash
# `make test`: runs the given make targets in order and ends with a table of minutes per stage
# (also when a stage fails: the table shows where the time went and which stage stopped the run).
set -uo pipefail
stages=("$@")
names=(); mins=(); results=()
total_start=$(date +%s)
table() {
  echo
  echo "labhub: minutes per stage"
  printf '  %-14s %8s  %s\n' STAGE MINUTES RESULT
  for i in "${!names[@]}"; do
    printf '  %-14s %8s  %s\n' "${names[$i]}" "${mins[$i]}" "${results[$i]}"
  done
  printf '  %-14s %8s\n' total "$(awk -v s=$(( $(date +%s) - total_start )) 'BEGIN{printf "%.1f", s/60}')"
}
for stage in "${stages[@]}"; do
  start=$(date +%s)
  if make --no-print-directory "$stage"; then result=passed; else result=FAILED; fi
  names+=("$stage"); results+=("$result")
  mins+=("$(awk -v s=$(( $(date +%s) - start )) 'BEGIN{printf "%.1f", s/60}')")
  if [ "$result" = FAILED ]; then
    table
    echo "labhub: stage $stage failed" >&2
    exit 1
  fi
done
table
