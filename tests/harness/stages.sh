#!/usr/bin/env bash
# `make test`: runs the given make targets in order and ends with a table of minutes per stage
# (also when a stage fails: the table shows where the time went and which stage stopped the run).
# A stage may add rows of its own under its line: it appends `name<TAB>minutes<TAB>result` lines
# to the file named by $LABHUB_STAGE_ROWS (molecule-all.sh writes one per scenario).
set -uo pipefail
stages=("$@")
names=(); mins=(); results=()
total_start=$(date +%s)
LABHUB_STAGE_ROWS=$(mktemp /tmp/labhub-stage-rows.XXXXXX)
export LABHUB_STAGE_ROWS
trap 'rm -f "$LABHUB_STAGE_ROWS"' EXIT

label() {
  case "$1" in
    host-deps) echo "host packages" ;;
    venvs) echo "venvs" ;;
    kube) echo "Go build (kube)" ;;
    unit) echo "pytest (tests/)" ;;
    base-image) echo "base image" ;;
    portal-test) echo "portal" ;;
    hub-test) echo "hub" ;;
    *) echo "$1" ;;
  esac
}
minutes() { awk -v s="$1" 'BEGIN{printf "%.1f", s/60}'; }
table() {
  echo
  echo "labhub: minutes per stage"
  printf '  %-26s %8s  %s\n' STAGE MINUTES RESULT
  for i in "${!names[@]}"; do
    printf '  %-26s %8s  %s\n' "${names[$i]}" "${mins[$i]}" "${results[$i]}"
  done
  printf '  %-26s %8s\n' total "$(minutes $(( $(date +%s) - total_start )))"
}
for stage in "${stages[@]}"; do
  start=$(date +%s)
  : >"$LABHUB_STAGE_ROWS"
  if make --no-print-directory "$stage"; then result=passed; else result=FAILED; fi
  names+=("$(label "$stage")"); results+=("$result")
  mins+=("$(minutes $(( $(date +%s) - start )))")
  while IFS=$'\t' read -r row_name row_min row_result; do
    [ -n "$row_name" ] || continue
    names+=("  $row_name"); mins+=("$row_min"); results+=("$row_result")
  done <"$LABHUB_STAGE_ROWS"
  if [ "$result" = FAILED ]; then
    table
    echo "labhub: stage $stage failed" >&2
    exit 1
  fi
done
table
