#!/usr/bin/env bash
# Accuracy gate for CI: run a small subset, compare it with a stored baseline run, fail on a
# significant drop.
#
# Usage: scripts/ci_accuracy_gate.sh [--dry-run] [--help] [-- ARGS for lmms-eval]
#
# Steps, each one command: (1) the model: the tiny Qwen2.5-VL trained on the fixture clips
# (`vreason tiny --trained`), unless MODEL names a checkpoint; (2) the data: the held-out fixture
# benchmark (`vreason fixtures --seed 0 --count COUNT --fixed-options`), unless DATA_DIR names a
# VREASON_EVAL_ROOT; (3) one lmms-eval run of TASKS into WORK/candidate (base decoding); (4)
# `vreason compare BASELINE WORK/candidate --gate`: exit 1 when a task dropped by more than MARGIN
# points with p < ALPHA (paired per doc: McNemar, or a sign-flip test for MRA), 2 on bad input.
# With no BASELINE run yet, step 4 stores the candidate as BASELINE and exits 0: commit or cache
# that folder; delete it to re-baseline after an intended change.
#
# Knobs (environment variables, defaults in brackets):
#   BASELINE    the stored baseline run (lmms-eval --output_path with samples) [ci/accuracy-baseline]
#   WORK        scratch folder: model, data, candidate run                     [runs/accuracy-gate]
#   MODEL       checkpoint to evaluate; empty: the trained tiny model           []
#   DATA_DIR    VREASON_EVAL_ROOT of the run; empty: the held-out fixture       []
#   COUNT       fixture records per problem type per benchmark                  [24]
#   TASKS       lmms-eval tasks (comma-separated)                              [vreason_bench]
#   MODEL_ARGS  backend arguments after pretrained=  [device=cpu,dtype=float32,max_frames=8,max_pixels=25088,min_pixels=3136,vreason=false]
#   MAX_NEW_TOKENS  generation budget per item                                 [64]
#   MARGIN      tolerated drop in points                                       [1.0]
#   ALPHA       significance level                                             [0.05]
#   VREASON     the vreason command                                            [vreason]
#   LMMS_EVAL   the lmms-eval command                                          [lmms-eval]
#
# --dry-run prints the commands and runs nothing. Examples:
#   scripts/ci_accuracy_gate.sh --dry-run
#   BASELINE=ci/accuracy-baseline scripts/ci_accuracy_gate.sh
#   MODEL=Qwen/Qwen2.5-VL-7B-Instruct DATA_DIR=$PWD/data/video-r1-eval TASKS=mmvu \
#     MODEL_ARGS=device=cuda scripts/ci_accuracy_gate.sh -- --limit 200
set -euo pipefail

BASELINE=${BASELINE:-ci/accuracy-baseline}
WORK=${WORK:-runs/accuracy-gate}
MODEL=${MODEL:-}
DATA_DIR=${DATA_DIR:-}
COUNT=${COUNT:-36}
TASKS=${TASKS:-vreason_bench}
MODEL_ARGS=${MODEL_ARGS:-device=cpu,dtype=float32,max_frames=8,max_pixels=25088,min_pixels=3136,vreason=false}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-64}
MARGIN=${MARGIN:-1.0}
ALPHA=${ALPHA:-0.05}
VREASON=${VREASON:-vreason}
LMMS_EVAL=${LMMS_EVAL:-lmms-eval}

DRY_RUN=0
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "unknown argument: $1 (valid: --help, --dry-run, -- ARGS for lmms-eval)" >&2; exit 2 ;;
  esac
  shift
done

run() {  # print a command, then run it unless --dry-run
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

CANDIDATE="$WORK/candidate"
echo "# 1/4 model"
if [ -z "$MODEL" ]; then MODEL="$WORK/model"; run "$VREASON" tiny "$MODEL" --trained; else echo "# MODEL=$MODEL"; fi
echo "# 2/4 data"
if [ -z "$DATA_DIR" ]; then
  DATA_DIR="$WORK/data"
  run "$VREASON" fixtures "$DATA_DIR" --seed 0 --count "$COUNT" --fixed-options
else
  echo "# DATA_DIR=$DATA_DIR"
fi
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$PWD/$DATA_DIR" ;; esac  # the tasks read it from any folder
echo "# 3/4 run $TASKS into $CANDIDATE"
run rm -rf "$CANDIDATE"
printf '+ export VREASON_EVAL_ROOT=%q HF_HUB_OFFLINE=1\n' "$DATA_DIR"
export VREASON_EVAL_ROOT="$DATA_DIR" HF_HUB_OFFLINE=1
lmms=("$LMMS_EVAL" --model qwen2_5_vl_vreason --model_args "pretrained=$MODEL,$MODEL_ARGS" --tasks "$TASKS")
lmms+=(--gen_kwargs "max_new_tokens=$MAX_NEW_TOKENS" --output_path "$CANDIDATE" --log_samples)
if [ ${#EXTRA[@]} -gt 0 ]; then lmms+=("${EXTRA[@]}"); fi
run "${lmms[@]}"
if [ "$DRY_RUN" = 0 ] && ! compgen -G "$CANDIDATE/*/*_results.json" >/dev/null; then
  echo "gate FAILED: lmms-eval wrote no results under $CANDIDATE (it exits 0 even when a run fails)" >&2
  exit 1
fi
echo "# 4/4 gate: $CANDIDATE against $BASELINE"
if [ ! -e "$BASELINE" ]; then
  echo "# no baseline at $BASELINE yet: storing this run as the baseline (commit or cache it)"
  run mkdir -p "$(dirname "$BASELINE")"
  run cp -r "$CANDIDATE" "$BASELINE"
  exit 0
fi
run "$VREASON" compare "$BASELINE" "$CANDIDATE" --labels baseline candidate --gate --margin "$MARGIN" --alpha "$ALPHA"
