#!/usr/bin/env bash
# Frees /dev/accel0 on every worker after a crash (a dead worker leaves the others holding the TPU).
set -euo pipefail
source "$(dirname "$0")/env.sh"
tpu_ssh "sudo lsof -t /dev/accel* 2>/dev/null | xargs -r sudo kill -9; pkill -f 'ptj train' || true"
