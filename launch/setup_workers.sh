#!/usr/bin/env bash
# Clones the repo on every worker and installs it with the TPU build of jax (same lock otherwise).
set -euo pipefail
source "$(dirname "$0")/env.sh"
tpu_ssh "set -e; rm -rf ~/prompt_transfer_jax && git clone -q '$REPO_URL' ~/prompt_transfer_jax && \
  cd ~/prompt_transfer_jax && python3 -m venv .venv && \
  .venv/bin/pip install -q -r requirements-lock.txt && .venv/bin/pip install -q --no-deps -e . && \
  .venv/bin/pip install -q 'jax[tpu]==0.10.2' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
