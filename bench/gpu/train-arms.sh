#!/usr/bin/env bash
# Runs CLI jobs from a plan file in parallel on one GPU until a deadline, for the
# GPU run's real-data experiment (bench/gpu/run.sh --phase train). A plan line is
#   NAME COMMAND FLAGS...        e.g.  oc8-lr0.19-s1 train --model resnet20 --max-lr 0.19 --seed 1
# ('#' starts a comment). Jobs start in the plan's order, P at a time (a small net
# at batch 128 leaves most of an H200 idle, so parallel processes add throughput);
# a job that cannot start before the deadline is skipped, one still running at
# the deadline is stopped with SIGINT (it checkpoints and exits 130), so its
# metrics up to then are kept. Each job's output folder is RUNS/NAME, its log
# RUNS/NAME.log; a line per finished job goes to RUNS/jobs.tsv.
#   bash bench/gpu/train-arms.sh PLAN RUNS DEADLINE_EPOCH_S [P] [-- EXTRA FLAGS FOR EVERY JOB]
set -uo pipefail
plan=$1 runs=$2 deadline=$3 par=${4:-6}
shift 4 || shift $#
[ "${1:-}" = "--" ] && shift
extra=("$@")
mkdir -p "$runs"
cli=(node --import tsx cli/main.ts)

run_job() { # name command flags...
  local name=$1; shift
  local left=$((deadline - $(date +%s)))
  if [ "$left" -le 20 ]; then
    printf '%s\tskipped\t0\t(deadline)\n' "$name" >>"$runs/jobs.tsv"
    return
  fi
  local t0=$(date +%s)
  timeout -s INT -k 20 "$left" "${cli[@]}" "$@" "${extra[@]}" --quiet --out "$runs/$name" >"$runs/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$*" >>"$runs/jobs.tsv"
}
active=0
while read -r name rest; do
  case "$name" in ''|'#'*) continue ;; esac
  # shellcheck disable=SC2086
  run_job "$name" $rest &
  active=$((active + 1))
  if [ "$active" -ge "$par" ]; then
    wait -n
    active=$((active - 1))
  fi
done <"$plan"
wait
echo "train-arms: $(grep -c . "$runs/jobs.tsv" 2>/dev/null || echo 0) jobs recorded in $runs/jobs.tsv"
