#!/usr/bin/env bash
# Reproduce Table 1 of V-Reason on one machine: data download -> check -> run -> collate.
#
# Usage: scripts/reproduce_table1.sh [--dry-run] [--help] [-- ARGS for `vreason run`]
#
# Resumable: rerun the same command after an interruption. The download resumes, the check is
# cheap, `vreason run` skips every config whose results are complete, and the collation reads
# whatever is there. The data check runs before any GPU time and stops the script when a file or
# video is missing. A thin wrapper: every step is one `vreason` command (`vreason SUBCOMMAND --help`).
#
# Knobs (environment variables, defaults in brackets):
#   MODEL_SIZE   3b | 7b: Qwen2.5-VL-{3B,7B}-Instruct                           [7b]
#   SETTING      32f128 (32 frames, 128*28*28 px) | 16f256 (16 frames, 256*28*28; 7b only) [32f128]
#   OUTPUT_ROOT  folder of the run folders, one per config                       [runs]
#   DATA_DIR     where the Video-R1 evaluation files and videos go                [data/video-r1-eval]
#   GPUS         data-parallel processes (accelerate); empty: every visible GPU   []
#   DOWNLOAD     0 to skip the download (DATA_DIR already holds the data)          [1]
#   VREASON      the vreason command, e.g. .venv/bin/vreason                       [vreason]
#
# --dry-run prints the commands and runs nothing. Examples:
#   scripts/reproduce_table1.sh --dry-run
#   MODEL_SIZE=7b SETTING=16f256 GPUS=8 OUTPUT_ROOT=/scratch/runs scripts/reproduce_table1.sh
#   scripts/reproduce_table1.sh -- --verbosity DEBUG          # extra args go to lmms-eval via vreason run
# On a SLURM cluster use scripts/slurm/single_node.sbatch or scripts/slurm/multinode.sbatch.
set -euo pipefail

MODEL_SIZE=${MODEL_SIZE:-7b}
SETTING=${SETTING:-32f128}
OUTPUT_ROOT=${OUTPUT_ROOT:-runs}
DATA_DIR=${DATA_DIR:-data/video-r1-eval}
GPUS=${GPUS:-}
DOWNLOAD=${DOWNLOAD:-1}
VREASON=${VREASON:-vreason}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$PWD/$DATA_DIR" ;; esac  # the tasks read it from any folder
DRY_RUN=0
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "unknown argument: $1 (valid: --help, --dry-run, -- ARGS for vreason run)" >&2; exit 2 ;;
  esac
  shift
done

run() {  # print a command, then run it unless --dry-run
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

PREFIX="t1-${MODEL_SIZE}-${SETTING}"
shopt -s nullglob
configs=("$REPO/model_configs/$PREFIX"-*.yaml)
shopt -u nullglob
if [ ${#configs[@]} -eq 0 ]; then
  echo "no configs model_configs/$PREFIX-*.yaml: MODEL_SIZE=$MODEL_SIZE SETTING=$SETTING is not a Table 1 setting" \
    "(see model_configs/README.md)" >&2
  exit 2
fi
run_args=("$REPO/model_configs/$PREFIX-*.yaml" --output-root "$OUTPUT_ROOT")
if [ -n "$GPUS" ]; then run_args+=(--num-processes "$GPUS"); fi
if [ ${#EXTRA[@]} -gt 0 ]; then run_args+=(-- "${EXTRA[@]}"); fi

echo "# 1/4 download (resumes)"
if [ "$DOWNLOAD" = 1 ]; then run "$VREASON" data download --local-dir "$DATA_DIR"; else echo "# skipped: DOWNLOAD=0"; fi
echo "# 2/4 check: every record's video present and decodable (exits 1 otherwise)"
run "$VREASON" data check "$DATA_DIR"
echo "# 3/4 run ${#configs[@]} config file(s) $PREFIX-* (skips complete ones)"
printf '+ export VREASON_EVAL_ROOT=%q\n' "$DATA_DIR"
export VREASON_EVAL_ROOT="$DATA_DIR"
run "$VREASON" run "${run_args[@]}"
echo "# 4/4 collate: Table 1, the paper's numbers beside yours"
run "$VREASON" collate "$OUTPUT_ROOT" --only "$PREFIX-*" --baseline "$PREFIX-base"
