#!/usr/bin/env bash
# `make test`: runs the given make targets in order and ends with a table of minutes per stage
# (also when a stage fails: the table shows where the time went and which stage stopped the run).
#
# An argument holding `|` is a group of lanes run side by side, each lane its stages in order:
#   stages.sh venvs 'unit | lint sanity molecule'
# runs `unit` while `lint`, `sanity` and `molecule` run one after the other beside it (the suite
# spends much of its time waiting on processes it started, so two lanes use the two cores of a CI
# machine better than one). Each output line of a lane is prefixed with its first stage's name;
# the table has a row per stage (marked with its lane) and one for the group's wall time. A lane
# stops at its first failed stage; the other lanes run to their end, then the run fails.
#
# A stage may add rows of its own under its line: it appends `name<TAB>minutes<TAB>result` lines
# to the file named by $LABHUB_STAGE_ROWS (molecule-all.sh writes one per scenario, unit.sh one
# per pytest process).
#
# When a stage fails, the lines of its output that name what failed (pytest's `FAILED`/`ERROR`
# summary lines, Ansible's `fatal:` lines, Molecule's errors) are printed again after the table,
# so the end of a CI log says which tests failed and not only which stage.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
names=(); mins=(); results=()
total_start=$(date +%s)
work=$(mktemp -d /tmp/labhub-stages.XXXXXX)
trap 'rm -rf "$work"' EXIT
# one file for the whole run, lanes included (they inherit it)
if [ -z "${LABHUB_FAILURES:-}" ]; then
  export LABHUB_FAILURES=$work/failures
  : >"$LABHUB_FAILURES"
fi

# Lane mode (internal): run the stages, write their rows to $LABHUB_LANE_REPORT, print no table.
lane_report=${LABHUB_LANE_REPORT:-}
unset LABHUB_LANE_REPORT

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
# How busy the machine was (all cores together), one value per minute: tells a CPU-bound run
# (where only less work helps) from one that waits (where more lanes help).
cpu_sampler() {
  local prev_total=0 prev_idle=0 total idle user nice system idle_ iowait irq softirq steal
  while :; do
    read -r _ user nice system idle_ iowait irq softirq steal _ </proc/stat
    total=$((user + nice + system + idle_ + iowait + irq + softirq + steal)); idle=$((idle_ + iowait))
    if [ "$prev_total" -gt 0 ] && [ "$total" -gt "$prev_total" ]; then
      echo $(( 100 * ((total - prev_total) - (idle - prev_idle)) / (total - prev_total) )) >>"$work/cpu"
    fi
    prev_total=$total; prev_idle=$idle
    sleep "${LABHUB_CPU_SAMPLE_SECONDS:-60}"
  done
}
cpu_report() {
  [ -s "$work/cpu" ] || return 0
  echo
  echo "labhub: CPU busy % (all $(nproc) cores), one value per minute; mean $(awk '{s+=$1} END{printf "%.0f", s/NR}' "$work/cpu")"
  tr '\n' ' ' <"$work/cpu" | fold -s -w 100 | sed 's/^/  /'
  echo
}
table() {
  echo
  echo "labhub: minutes per stage"
  printf '  %-34s %8s  %s\n' STAGE MINUTES RESULT
  for i in "${!names[@]}"; do
    printf '  %-34s %8s  %s\n' "${names[$i]}" "${mins[$i]}" "${results[$i]}"
  done
  printf '  %-34s %8s\n' total "$(minutes $(( $(date +%s) - total_start )))"
  cpu_report
  if [ -s "$LABHUB_FAILURES" ]; then
    echo
    echo "labhub: what failed (from each failed stage's output)"
    cat "$LABHUB_FAILURES"
  fi
}
failures_of() {  # stage, its log: the lines naming what failed, shortened, at most 40
  sed 's/\x1b\[[0-9;]*m//g' "$2" \
    | grep -E '^(FAILED|ERROR) |fatal: \[|^(CRITICAL|ERROR) +[A-Z]|^E +[A-Za-z]+Error|[0-9.]+ +FAILED$|^make(\[[0-9]+\])?: \*\*\*' \
    | grep -v -e "glob failed" -e "RETRYING" | cut -c1-300 | tail -n 40 | sed "s/^/  $1: /" >>"$LABHUB_FAILURES"
}
finish_failed() {  # stage name
  if [ -n "$lane_report" ]; then
    rows_out
  else
    table
  fi
  echo "labhub: stage $1 failed" >&2
  exit 1
}
rows_out() {
  for i in "${!names[@]}"; do
    printf '%s\t%s\t%s\n' "${names[$i]}" "${mins[$i]}" "${results[$i]}"
  done >"$lane_report"
}

run_stage() {  # make target; sets $result
  local stage=$1 start rows
  start=$(date +%s)
  rows="$work/rows.$stage"
  : >"$rows"
  LABHUB_STAGE_ROWS=$rows make --no-print-directory "$stage" 2>&1 | tee "$work/log.$stage"
  if [ "${PIPESTATUS[0]}" -eq 0 ]; then
    result=passed
  else
    result=FAILED
    failures_of "$stage" "$work/log.$stage"
  fi
  names+=("$(label "$stage")"); results+=("$result")
  mins+=("$(minutes $(( $(date +%s) - start )))")
  while IFS=$'\t' read -r row_name row_min row_result; do
    [ -n "$row_name" ] || continue
    names+=("  $row_name"); mins+=("$row_min"); results+=("$row_result")
  done <"$rows"
}

run_lanes() {  # "stage ... | stage ... [| ...]"; sets $result
  local group=$1 start n=0 lane pids=() tags=() reports=() tag i
  start=$(date +%s)
  result=passed
  IFS='|' read -r -a lanes <<<"$group"
  for lane in "${lanes[@]}"; do
    read -r -a lane_stages <<<"$lane"
    [ ${#lane_stages[@]} -gt 0 ] || continue
    n=$((n + 1))
    tag=${lane_stages[0]}
    tags+=("$tag"); reports+=("$work/lane.$n")
    # each line of the lane's output prefixed with its tag, as it comes
    ( LABHUB_LANE_REPORT="$work/lane.$n" "$here/stages.sh" "${lane_stages[@]}" 2>&1 \
        | sed -u "s/^/[$tag] /" ) &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || true
  done
  for i in "${!reports[@]}"; do
    if [ ! -s "${reports[$i]}" ]; then
      names+=("[${tags[$i]}] (lane)"); mins+=("-"); results+=("FAILED")
      result=FAILED
      continue
    fi
    while IFS=$'\t' read -r row_name row_min row_result; do
      names+=("[${tags[$i]}] $row_name"); mins+=("$row_min"); results+=("$row_result")
      [ "$row_result" = FAILED ] && result=FAILED
    done <"${reports[$i]}"
  done
  names+=("side by side, wall time"); results+=("$result")
  mins+=("$(minutes $(( $(date +%s) - start )))")
}

if [ -z "$lane_report" ]; then
  cpu_sampler &
  sampler=$!
  trap 'kill "$sampler" 2>/dev/null; rm -rf "$work"' EXIT
fi
for stage in "$@"; do
  if [[ "$stage" == *"|"* ]]; then
    run_lanes "$stage"
  else
    run_stage "$stage"
  fi
  [ "$result" = FAILED ] && finish_failed "$stage"
done
if [ -n "$lane_report" ]; then
  rows_out
  exit 0
fi
table
