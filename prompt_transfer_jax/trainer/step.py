"""The prompt-tuning train step: loss, prompt-only gradient, optax update, jitted on a mesh.

Pure JAX (no TensorFlow), so benchmarks and other callers can build the step without the data
pipeline. The frozen parameters are an explicit argument of the jitted function that is never
differentiated: `jax.value_and_grad` sees only the prompt, so no weight gradient (dW) is computed
or stored and the backward pass costs about one forward of activation gradients.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import flax
import gin
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from prompt_transfer_jax import partitioning

LOSS_NORMALIZATIONS = ('sum', 'mean')
OPTIMIZERS = ('adafactor', 'adamw')
# XLA:CPU: plain XLA matmuls instead of YNNPACK fusions, which fold elementwise work in and
# materialise its broadcasts. T5 1.1 small step at batch 32 (bench/train_step_vs_peft.py):
# 12% less time on one thread, ~1% on two, ~30% when PyTorch shares the process.
CPU_COMPILER_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': ''}


@functools.lru_cache(maxsize=None)
def _cpu_options_supported() -> bool:
  """False if this XLA build no longer knows the (experimental) option."""
  try:
    jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(
        jax.ShapeDtypeStruct((), jnp.float32)).compile()
  except Exception:  # noqa: BLE001  (XLA reports an unknown option as a generic runtime error)
    return False
  return True


def compiler_options(mesh: Mesh) -> Optional[dict]:
  """XLA options for the step on this mesh's platform (None: XLA's defaults)."""
  if mesh.devices.flat[0].platform == 'cpu' and _cpu_options_supported():
    return dict(CPU_COMPILER_OPTIONS)
  return None


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; all of it is checkpointed."""
  step: jax.Array        # int32 scalar: number of updates applied
  prompt: jax.Array      # float32 [P, E]
  opt_state: Any         # the optax state of the prompt
  rng: jax.Array         # uint32 [2]: base dropout key (per-step keys are folded in)


def init_state(prompt, optimizer: optax.GradientTransformation, seed: int = 0) -> TrainState:
  prompt = jnp.asarray(prompt, jnp.float32)
  return TrainState(step=jnp.zeros((), jnp.int32), prompt=prompt, opt_state=optimizer.init(prompt),
                    rng=jax.random.key_data(jax.random.PRNGKey(seed)))


@gin.configurable(module='ptj')
def make_optimizer(name: str = 'adafactor', learning_rate: float = 0.3,
                   weight_decay: Optional[float] = None, clip_norm: Optional[float] = None,
                   adafactor_decay_rate: float = 0.8, adafactor_clipping_threshold: float = 1.0,
                   adamw_b1: float = 0.9, adamw_b2: float = 0.999,
                   adamw_eps: float = 1e-6) -> optax.GradientTransformation:
  """The prompt's optimizer (constant learning rate).

  * `adafactor`: Lester et al. / google-research/prompt-tuning (lr 0.3, decay_rate 0.8, no
    parameter scaling, update clipping 1.0, no factoring for prompt axes; weight decay defaults
    to 1e-5 and, as in optax, is scaled by the learning rate).
  * `adamw`: the paper's original code (betas 0.9 / 0.999, eps 1e-6, weight decay 0 by default).

  `clip_norm` adds global-norm gradient clipping before the update.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f'unknown optimizer {name!r}; choose one of {", ".join(OPTIMIZERS)}')
  if not learning_rate > 0:
    raise ValueError(f'learning_rate must be positive, got {learning_rate}')
  if name == 'adafactor':
    tx = optax.adafactor(learning_rate, decay_rate=adafactor_decay_rate,
                         multiply_by_parameter_scale=False,
                         clipping_threshold=adafactor_clipping_threshold,
                         weight_decay_rate=1e-5 if weight_decay is None else weight_decay,
                         factored=False)
  else:
    tx = optax.adamw(learning_rate, b1=adamw_b1, b2=adamw_b2, eps=adamw_eps,
                     weight_decay=0.0 if weight_decay is None else weight_decay)
  if clip_norm is not None:
    if not clip_norm > 0:
      raise ValueError(f'clip_norm must be positive, got {clip_norm}')
    tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
  return tx


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Token cross-entropy over the targets.

  `normalization='sum'` sums over every target token of the global batch, as T5X does with
  `LOSS_NORMALIZING_FACTOR=None` (the prompt-tuning recipe; Adafactor's updates do not depend on
  the gradient scale). `'mean'` divides by the number of target tokens (a per-token average, the
  usual choice with AdamW and the paper's PyTorch code).
  """
  z_loss: float = 1e-4
  label_smoothing: float = 0.0
  normalization: str = 'sum'

  def __post_init__(self):
    if self.normalization not in LOSS_NORMALIZATIONS:
      raise ValueError(f'loss_normalization must be one of {LOSS_NORMALIZATIONS}, got '
                       f'{self.normalization!r}')
    if not 0.0 <= self.label_smoothing < 1.0:
      raise ValueError(f'label_smoothing must be in [0, 1), got {self.label_smoothing}')
    if self.z_loss < 0:
      raise ValueError(f'z_loss must be >= 0, got {self.z_loss}')


def batch_loss(backbone, params, prompt, batch, loss: LossConfig, dropout_rng=None):
  """(loss to differentiate, (summed loss, number of target tokens))."""
  per_example, tokens = backbone.token_loss(params, prompt, batch, dropout_rng=dropout_rng,
                                            z_loss=loss.z_loss,
                                            label_smoothing=loss.label_smoothing)
  total, count = jnp.sum(per_example), jnp.sum(tokens)
  value = total if loss.normalization == 'sum' else total / jnp.maximum(count, 1.0)
  return value, (total, count)


def make_train_step(backbone, optimizer: optax.GradientTransformation, loss: LossConfig,
                    dropout: bool = False) -> Callable:
  """`step(state, params, batch) -> (state, metrics)`, not jitted (see `jit_train_step`)."""

  def step(state: TrainState, params, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step) if dropout else None

    def objective(prompt):
      return batch_loss(backbone, params, prompt, batch, loss, rng)

    (value, (total, count)), grad = jax.value_and_grad(objective, has_aux=True)(state.prompt)
    updates, opt_state = optimizer.update(grad, state.opt_state, state.prompt)
    prompt = optax.apply_updates(state.prompt, updates)
    metrics = {'loss': value, 'loss_per_target_token': total / jnp.maximum(count, 1.0),
               'target_tokens': count, 'grad_norm': optax.global_norm(grad)}
    return state.replace(step=state.step + 1, prompt=prompt, opt_state=opt_state), metrics

  return step


def state_shardings(state: TrainState, mesh: Mesh):
  """The train state is tiny: replicated on every device."""
  return jax.tree.map(lambda _: partitioning.replicated(mesh), state)


def jit_train_step(step: Callable, state: TrainState, mesh: Mesh, param_shardings,
                   batch_sharding: NamedSharding) -> Callable:
  """Jits `step` with explicit in/out shardings, activations constrained by the logical-axis rules
  (`partitioning.constrain_activations`); the state buffer is donated."""
  state_sh = state_shardings(state, mesh)
  replicated = partitioning.replicated(mesh)
  return jax.jit(partitioning.constrain_activations(step, mesh), in_shardings=(state_sh, param_shardings, batch_sharding),
                 out_shardings=(state_sh, replicated), donate_argnums=(0,),
                 compiler_options=compiler_options(mesh))
