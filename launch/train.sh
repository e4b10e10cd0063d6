#!/usr/bin/env bash
# Prompt-tunes on every worker at once (SPMD: identical command on each host). Extra arguments are
# passed to `ptj train`, e.g.  launch/train.sh --gin.MIXTURE_OR_TASK_NAME="'t5_sst2'"
set -euo pipefail
source "$(dirname "$0")/env.sh"
: "${GIN_FILES:=--gin_file=models/t5_1_1_xxl_prompt.gin --gin_file=prompts/normal.gin --gin_file=runs/prompt_train.gin}"
args=$(printf ' %q' "$@")
tpu_ssh "cd ~/prompt_transfer_jax && TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/ptj train $GIN_FILES \
  --multiprocess --tfds_data_dir='$TFDS_DATA_DIR' \
  --gin.MODEL_DIR=\"'$MODEL_DIR'\" --gin.INITIAL_CHECKPOINT_PATH=\"'$INITIAL_CHECKPOINT_PATH'\" $args \
  2>&1 | tee -a ~/train.log"
