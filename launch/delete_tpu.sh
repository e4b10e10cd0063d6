#!/usr/bin/env bash
set -euo pipefail
source "$(dirname "$0")/env.sh"
gcloud compute tpus tpu-vm delete "$TPU_NAME" --project "$PROJECT" --zone "$ZONE" --quiet
