"""Run a script in its own process on N fake CPU devices (the device count is fixed at JAX start-up)."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script: str, devices: int = 8, timeout: int = 300) -> str:
  """Runs `script` with `devices` CPU devices and the repository on the path; returns its
  stdout, failing the test with the end of its stderr when it exits non-zero."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO,
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  proc = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout
