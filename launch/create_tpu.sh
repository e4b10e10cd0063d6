#!/usr/bin/env bash
# Creates the TPU VM pod slice (queued resources are more reliable for large slices).
set -euo pipefail
source "$(dirname "$0")/env.sh"
gcloud compute tpus tpu-vm create "$TPU_NAME" --project "$PROJECT" --zone "$ZONE" \
  --accelerator-type "$ACCELERATOR_TYPE" --version "$RUNTIME_VERSION"
