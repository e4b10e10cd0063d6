"""TensorFlow for the data pipeline only: quiet logs, and never let TF take an accelerator from JAX."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TF already initialised its devices (someone imported it first).
  pass
