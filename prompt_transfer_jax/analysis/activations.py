"""The activation extractor: FFN activations of a frozen backbone for many prompts, jitted and chunked.

It sees the model only through the backbone interface (`ffn_activations(params, prompt, batch,
stack, kind) -> [B, layers, length, d_ff]`), so T5 and RoBERTa share it. One jitted call runs a
chunk of C prompts on M input examples as one batch of C*M rows (the prompt argument is
`[C*M, P, E]`), keeps one position per layer, and averages over the examples. Chunks stream into
an activation `.npz` (see `activation_store`). Parameters sharded on a mesh (`PlacedParams`, as
every run places them) are used where they lie: the call is traced under the logical-axis rules,
so T5-XXL's FFN activations are computed sharded and only the `[C, layers, d_ff]` result is
gathered.

Defaults follow the original code (spec section 5.2): T5 reads the decoder FFN pre-activation
(`wi` / `wi_0`) at the first decoding step for the encoder input prompt + `<extra_id_0>`;
RoBERTa reads the encoder FFN at the `<mask>` slot (position 0) for input prompt + `<s>`.
Pads are masked here (the 1.0 T5 code let the encoder attend to them). Token ids are checked
against the model's vocabulary (an out-of-range id gives NaN activations) and every chunk must be
finite; a failure writes nothing (the `.npz` is written to a temporary name).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.analysis.activation_store import ActivationWriter
from prompt_transfer_jax.models.t5 import FFN_HIDDEN, FFN_PRE_ACTIVATION

T5_SENTINEL_ID = 32099  # <extra_id_0> in the T5 vocabulary
ROBERTA_BOS_ID = 0      # <s> in the RoBERTa vocabulary
POSITIONS = ('first_step', 'mask_slot', 'after_prompt', 'prompt_mean')


@dataclasses.dataclass(frozen=True)
class ExtractionSpec:
  """Which activations to keep.

  stack: 'decoder' or 'encoder'. position: 'first_step' (decoder position 0), 'mask_slot'
  (encoder position 0, RoBERTa's `<mask>` slot), 'after_prompt' (encoder position P, the first
  input token), 'prompt_mean' (encoder positions 0..P-1 averaged) or an integer index into the
  stack's sequence. kind: `ffn_pre_activation` (x @ wi / wi_0) or `ffn_hidden` (enters wo).
  layers: indices of the layers to keep (None = all).
  """
  stack: str = 'decoder'
  position: Union[str, int] = 'first_step'
  kind: str = FFN_PRE_ACTIVATION
  layers: Optional[tuple] = None

  def __post_init__(self):
    if self.stack not in ('encoder', 'decoder'):
      raise ValueError(f"stack must be 'encoder' or 'decoder', got {self.stack!r}")
    if isinstance(self.position, str):
      if self.position not in POSITIONS:
        raise ValueError(f'position must be an integer or one of {", ".join(POSITIONS)}, got {self.position!r}')
      needed = 'decoder' if self.position == 'first_step' else 'encoder'
      if self.stack != needed:
        raise ValueError(f'position {self.position!r} is a {needed} position, but stack is {self.stack!r}')
    if self.kind not in (FFN_PRE_ACTIVATION, FFN_HIDDEN):
      raise ValueError(f'kind must be {FFN_PRE_ACTIVATION!r} or {FFN_HIDDEN!r}, got {self.kind!r}')
    if self.layers is not None:
      object.__setattr__(self, 'layers', tuple(int(i) for i in self.layers))

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


T5_SPEC = ExtractionSpec()
ROBERTA_SPEC = ExtractionSpec(stack='encoder', position='mask_slot')


def t5_sentinel_inputs(sentinel_id: int = T5_SENTINEL_ID, append_eos: bool = False) -> dict:
  """The original T5 input: encoder text `<extra_id_0>` (optionally + `</s>`), decoder start 0."""
  tokens = [sentinel_id] + ([1] if append_eos else [])
  return {'encoder_input_tokens': np.asarray([tokens], np.int32),
          'decoder_input_tokens': np.zeros((1, 1), np.int32)}


def roberta_bos_inputs(bos_id: int = ROBERTA_BOS_ID) -> dict:
  """The original RoBERTa input: `<s>` alone after the prompt slots (slot 0 = `<mask>`)."""
  return {'encoder_input_tokens': np.asarray([[bos_id]], np.int32)}


def _select_position(acts, spec: ExtractionSpec, prompt_length: int):
  """`[B, layers, length, d_ff]` -> `[B, layers, d_ff]`."""
  pos = spec.position
  if pos == 'prompt_mean':
    return acts[:, :, :prompt_length].mean(axis=2)
  index = {'first_step': 0, 'mask_slot': 0, 'after_prompt': prompt_length}.get(pos, pos)
  if not -acts.shape[2] <= index < acts.shape[2]:
    raise ValueError(f'position {index} is outside the {spec.stack} sequence of length {acts.shape[2]}')
  return acts[:, :, index]


def _extract_body(backbone, spec: ExtractionSpec):
  def extract(params, prompts, inputs):
    c, p = prompts.shape[:2]
    m = next(iter(inputs.values())).shape[0]
    prompt_rows = jnp.repeat(prompts, m, axis=0)
    batch = {k: jnp.tile(v, (c,) + (1,) * (v.ndim - 1)) for k, v in inputs.items()}
    acts = backbone.ffn_activations(params, prompt_rows, batch, spec.stack, spec.kind)
    if spec.layers is not None:
      acts = acts[:, jnp.asarray(spec.layers)]
    acts = _select_position(acts, spec, p).astype(jnp.float32)
    return acts.reshape((c, m) + acts.shape[1:]).mean(axis=1)
  return extract


@functools.lru_cache(maxsize=32)
def make_extract_fn(backbone, spec: ExtractionSpec = T5_SPEC):
  """A jitted `(params, prompts [C, P, E], inputs {name: [M, ...]}) -> [C, layers, d_ff]`.

  Each prompt runs on all M input examples; activations are averaged over the examples. Cached
  per (backbone, spec), so repeated extractions reuse the compiled function.
  """
  return jax.jit(_extract_body(backbone, spec))


def _mesh_extract_fn(backbone, spec: ExtractionSpec, placed: partitioning.PlacedParams):
  """`make_extract_fn` for parameters sharded on a mesh (`FrozenModel.on_mesh`): traced under
  the logical-axis rules (rows over 'data', heads and d_ff over 'model'); prompts, inputs and the
  result replicated, so every process reads the whole result."""
  replicated = partitioning.replicated(placed.mesh)
  fn = jax.jit(partitioning.constrain_activations(_extract_body(backbone, spec), placed.mesh),
               in_shardings=(placed.shardings, replicated, replicated), out_shardings=replicated)

  def extract(prompts, inputs):
    prompts, inputs = partitioning.place((prompts, inputs), jax.tree.map(
        lambda _: replicated, (prompts, inputs)))
    return partitioning.host(fn(placed.params, prompts, inputs))
  return extract


def _check_inputs(inputs: Mapping[str, np.ndarray], vocab_size: Optional[int] = None) -> dict:
  """Same number of examples in every field; token ids (`*_tokens`) integers in the vocabulary."""
  if not inputs:
    raise ValueError('inputs must hold at least one batch field (e.g. encoder_input_tokens)')
  arrays = {k: np.asarray(v) for k, v in inputs.items()}
  sizes = {k: v.shape[0] for k, v in arrays.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f'input fields have different numbers of examples: {sizes}')
  for name, value in arrays.items():
    if not name.endswith('_tokens'):
      continue
    if value.dtype.kind not in 'iu':
      raise ValueError(f'{name} must hold integer token ids, got dtype {value.dtype}')
    if value.size and (value.min() < 0 or (vocab_size is not None and value.max() >= vocab_size)):
      bad = int(value.max() if value.min() >= 0 else value.min())
      raise ValueError(f'{name} holds token id {bad}, outside the model vocabulary [0, '
                       f'{vocab_size}) (a T5 sentinel id for another vocabulary? set the '
                       'sentinel id of this model)')
  return arrays


def _vocab_size(backbone) -> Optional[int]:
  return getattr(getattr(backbone, 'config', None), 'vocab_size', None)


def check_finite(values: np.ndarray, what: str, names: Optional[Sequence[str]] = None) -> None:
  """A one-line error naming the first rows (prompts) with NaN/Inf in `values` `[N, ...]`."""
  bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
  if bad.any():
    rows = np.flatnonzero(bad)
    shown = [str(names[i]) if names is not None else str(i) for i in rows[:5]]
    raise ValueError(f'{what} of {len(rows)} prompt(s) are not finite (NaN/Inf): '
                     f'{", ".join(shown)}{" ..." if len(rows) > 5 else ""}; nothing was written')


def iter_activations(backbone, params, prompts, inputs: Optional[Mapping] = None,
                     spec: ExtractionSpec = T5_SPEC, chunk_size: int = 8, progress: bool = False,
                     names: Optional[Sequence[str]] = None):
  """Yields `[c, layers, d_ff]` numpy chunks for `prompts` `[N, P, E]` (named `names` in errors),
  in order. `params`: the parameters on one device (or host), or a `partitioning.PlacedParams`
  (sharded on a mesh: T5-XXL).

  The last chunk is padded with zero prompts to `chunk_size` so one compilation serves all.
  """
  prompts = np.asarray(prompts, np.float32)
  if prompts.ndim != 3 or prompts.shape[-1] != backbone.embed_dim:
    raise ValueError(f'prompts must be [N, P, {backbone.embed_dim}], got shape {prompts.shape}')
  if chunk_size <= 0:
    raise ValueError(f'chunk_size must be positive, got {chunk_size}')
  inputs = _check_inputs(t5_sentinel_inputs() if inputs is None else inputs, _vocab_size(backbone))
  if isinstance(params, partitioning.PlacedParams):
    fn = _mesh_extract_fn(backbone, spec, params)
  else:
    fn = functools.partial(make_extract_fn(backbone, spec), params)
  n = prompts.shape[0]
  chunk_size = min(chunk_size, n)
  starts = range(0, n, chunk_size)
  if progress:
    from tqdm import tqdm
    starts = tqdm(starts, total=len(starts), unit='chunk', desc='activations')
  for start in starts:
    chunk = prompts[start:start + chunk_size]
    real = chunk.shape[0]
    if real < chunk_size:
      chunk = np.concatenate([chunk, np.zeros((chunk_size - real,) + chunk.shape[1:], chunk.dtype)])
    out = np.asarray(fn(chunk, inputs))[:real]
    check_finite(out, 'the activations', (names or range(n))[start:start + real])
    yield out


def extract_activations(backbone, params, prompts, inputs: Optional[Mapping] = None,
                        spec: ExtractionSpec = T5_SPEC, chunk_size: int = 8) -> np.ndarray:
  """All activations in memory: `[N, layers, d_ff]` float32."""
  return np.concatenate(list(iter_activations(backbone, params, prompts, inputs, spec, chunk_size)))


def extract_to_file(path: str, backbone, params, names: Sequence[str], prompts,
                    inputs: Optional[Mapping] = None, spec: ExtractionSpec = T5_SPEC,
                    chunk_size: int = 8, meta: Optional[dict] = None, progress: bool = True) -> None:
  """Streams the activations of `prompts` (named `names`) into an activation `.npz` at `path`."""
  prompts = np.asarray(prompts, np.float32)
  if len(names) != prompts.shape[0]:
    raise ValueError(f'{len(names)} names for {prompts.shape[0]} prompts')
  inputs = t5_sentinel_inputs() if inputs is None else inputs
  info = {'spec': spec.to_json(), 'prompt_length': int(prompts.shape[1]),
          'input_examples': int(np.asarray(next(iter(inputs.values()))).shape[0])}
  if 'encoder_input_tokens' in inputs:
    info['first_encoder_input_tokens'] = np.asarray(inputs['encoder_input_tokens'])[0].tolist()
  info.update(meta or {})
  chunks = iter_activations(backbone, params, prompts, inputs, spec, chunk_size, progress, names)
  first = next(chunks)     # a bad input fails here, before the file is opened
  layers = spec.layers if spec.layers is not None else tuple(range(first.shape[1]))
  with ActivationWriter(path, names, layers, first.shape[2], info) as writer:
    writer.write(first)
    for chunk in chunks:
      writer.write(chunk)
