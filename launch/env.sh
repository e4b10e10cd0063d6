# Settings shared by every launch script. Copy to env.local.sh and edit, or export before running.
: "${PROJECT:?set PROJECT to your GCP project}"
: "${ZONE:=us-central2-b}"
: "${TPU_NAME:=ptj-pod}"
: "${ACCELERATOR_TYPE:=v4-32}"
: "${RUNTIME_VERSION:=tpu-ubuntu2204-base}"
: "${BUCKET:?set BUCKET to a gs:// bucket for checkpoints, data and runs}"
: "${REPO_URL:=https://example.invalid/prompt_transfer_jax.git}"   # where workers clone the code from
: "${MODEL_DIR:=${BUCKET}/runs/$(date +%Y%m%d-%H%M%S)}"
: "${TFDS_DATA_DIR:=${BUCKET}/tfds}"
: "${INITIAL_CHECKPOINT_PATH:=gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_xxl/checkpoint_1100000}"
export PROJECT ZONE TPU_NAME ACCELERATOR_TYPE RUNTIME_VERSION BUCKET REPO_URL MODEL_DIR TFDS_DATA_DIR INITIAL_CHECKPOINT_PATH

tpu_ssh() {  # run a command on every worker of the pod
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --project "$PROJECT" --zone "$ZONE" --worker=all --command="$1"
}
