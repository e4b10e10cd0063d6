"""Flax RoBERTa prompt layouts against hand-built PyTorch references on transformers' RoBERTa."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from prompt_transfer_jax import partitioning
from prompt_transfer_jax.checkpoints.roberta import load_roberta
from prompt_transfer_jax.models import roberta as roberta_lib
from prompt_transfer_jax.models.roberta_backbone import RobertaBackbone
from prompt_transfer_jax.models.t5 import FFN_HIDDEN, FFN_PRE_ACTIVATION

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

TINY = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=40, layer_norm_eps=1e-5,
            type_vocab_size=1)
PAD, MASK = 1, 63
TOKENS = np.array([[0, 5, 6, 7, 2, 1, 1, 1],
                   [0, 8, 9, 10, 11, 12, 13, 2],
                   [0, 3, 2, 1, 1, 1, 1, 1]], np.int32)
LABEL_WORDS = (20, 21, 22)
P = 5


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """(HF model, our config, our params) for one random tiny RoBERTa saved as safetensors."""
  torch.manual_seed(0)
  model = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**TINY)).eval()
  with torch.no_grad():
    for param in model.parameters():
      param.add_(0.3 * torch.randn_like(param))
  path = tmp_path_factory.mktemp('roberta')
  model.save_pretrained(path)
  config, params = load_roberta(str(path))
  assert config.mask_id == MASK
  return model, config, params


def _prompt(seed=0, rows=P):
  return np.random.default_rng(seed).normal(0, 0.5, (rows, TINY['hidden_size'])).astype(np.float32)


class _ZeroPromptPositions(torch.nn.Module):
  """Wraps HF's position embedding: zero vectors on the first `rows` slots (the original's patch)."""

  def __init__(self, table, rows):
    super().__init__()
    self.table, self.rows = table, rows

  def forward(self, ids):
    out = self.table(ids)
    return torch.cat([torch.zeros_like(out[:, :self.rows]), out[:, self.rows:]], dim=1)


def _torch_mask_slot(model, prompt, tokens):
  """`<mask> p_1..p_{P-1} <s> text </s>` through HF by hand: (logits, prompt leaf, FFN captures)."""
  emb = model.roberta.embeddings
  ids = torch.tensor(tokens, dtype=torch.long)
  prompt_t = torch.tensor(prompt, requires_grad=True)
  b, rows = ids.shape[0], prompt.shape[0]
  inputs = torch.cat([prompt_t.expand(b, -1, -1), emb.word_embeddings(ids)], dim=1)
  inputs.data[:, 0] = emb.word_embeddings.weight[MASK].detach()  # the static <mask> slot, via .data
  text_positions = emb.create_position_ids_from_input_ids(ids, PAD)
  position_ids = torch.cat([torch.full((b, rows), PAD + 1), text_positions], dim=1)
  table = emb.position_embeddings
  attention = torch.cat([torch.ones(b, rows, dtype=torch.long), (ids != PAD).long()], dim=1)
  captured = {FFN_PRE_ACTIVATION: [], FFN_HIDDEN: []}
  hooks = []
  for layer in model.roberta.encoder.layer:
    hooks.append(layer.intermediate.dense.register_forward_hook(
        lambda m, i, o: captured[FFN_PRE_ACTIVATION].append(o.detach().numpy())))
    hooks.append(layer.intermediate.register_forward_hook(
        lambda m, i, o: captured[FFN_HIDDEN].append(o.detach().numpy())))
  emb.position_embeddings = _ZeroPromptPositions(table, rows)  # patched for this call only
  try:
    logits = model(inputs_embeds=inputs, position_ids=position_ids, attention_mask=attention).logits
  finally:
    emb.position_embeddings = table
    for hook in hooks:
      hook.remove()
  return logits, prompt_t, {k: np.stack(v, axis=1) for k, v in captured.items()}


def test_mask_slot_layout_matches_hand_built_torch_reference(tiny):
  model, config, params = tiny
  prompt = _prompt()
  labels = np.array([0, 2, 1])
  ref_logits, prompt_t, ref_ffn = _torch_mask_slot(model, prompt, TOKENS)
  ref_loss = torch.nn.functional.cross_entropy(ref_logits[:, 0, list(LABEL_WORDS)],
                                               torch.tensor(labels), reduction='sum')
  ref_loss.backward()
  ref_logits = ref_logits.detach().numpy()

  backbone = RobertaBackbone(config, label_token_ids=LABEL_WORDS)
  batch = {'encoder_input_tokens': jnp.asarray(TOKENS), 'label': jnp.asarray(labels)}

  @jax.jit
  def run(prompt):
    logits = backbone.model.apply({'params': params}, batch['encoder_input_tokens'], prompt)
    scores = backbone.label_logits(params, prompt, batch, LABEL_WORDS)
    acts = {kind: backbone.ffn_activations(params, prompt, batch, 'encoder', kind)
            for kind in (FFN_PRE_ACTIVATION, FFN_HIDDEN)}
    grad = jax.grad(lambda p: backbone.token_loss(params, p, batch)[0].sum())(prompt)
    return logits, scores, acts, grad

  logits, scores, acts, grad = jax.device_get(run(jnp.asarray(prompt)))
  assert logits.shape == (3, P + 8, 64)  # covers prompt and text slots
  assert np.abs(logits - ref_logits).max() <= 1e-4  # measured ~2e-6
  assert np.abs(scores - ref_logits[:, 0, list(LABEL_WORDS)]).max() <= 1e-4
  for kind, ref in ref_ffn.items():
    assert acts[kind].shape == (3, 2, P + 8, 32)
    assert np.abs(acts[kind] - ref).max() <= 1e-4
  # Row 0 is overwritten but, as in the original, receives the gradient of the <mask> slot.
  ref_grad = prompt_t.grad.numpy()
  assert np.abs(ref_grad[0]).max() > 1e-3
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)


def test_mask_slot_ignores_prompt_row_0_and_embedding_dropout(tiny):
  _, config, params = tiny
  prompt = _prompt()
  other = prompt.copy()
  other[0] += 3.0
  rng = jax.random.key(0, impl='rbg')  # compiles several times faster than threefry on CPU

  @functools.partial(jax.jit, static_argnums=(0,))
  def embed(cfg, prompt, other):
    apply = functools.partial(roberta_lib.RoBERTa(cfg).apply, {'params': params}, rngs={'dropout': rng})
    run = lambda m, p, det: m.embeddings(TOKENS, p, deterministic=det)[0]
    return apply(prompt, True, method=run), apply(other, True, method=run), apply(prompt, False, method=run)

  kept, row_0_changed, dropped = embed(config, prompt, other)
  np.testing.assert_array_equal(kept, row_0_changed)  # the <mask> slot replaces row 0
  np.testing.assert_array_equal(kept, dropped)  # no embedding dropout in the mask-slot layout
  kept, _, dropped = embed(config.replace(prompt_layout='plain'), prompt, other)
  assert not np.array_equal(kept, dropped)
  forward = jax.jit(lambda key: roberta_lib.RoBERTa(config).apply(
      {'params': params}, TOKENS, prompt, enable_dropout=True, rngs={'dropout': key}))
  first, second = forward(rng), forward(jax.random.key(1, impl='rbg'))
  assert np.isfinite(first).all() and not np.allclose(first, second)  # layer dropout is on


def test_plain_layout_matches_torch_reference(tiny):
  model, config, params = tiny
  config = config.replace(prompt_layout='plain')
  prompt = _prompt(1, rows=3)
  rows = []
  for row in TOKENS.tolist():  # `<s> text <mask> </s>`: <mask> before the last non-pad token
    n = sum(t != PAD for t in row)
    rows.append(row[:n - 1] + [MASK] + row[n - 1:])
  with_mask = torch.tensor(rows, dtype=torch.long)
  b = len(rows)
  emb = model.roberta.embeddings
  words = emb.word_embeddings(with_mask)
  inputs = torch.cat([words[:, :1], torch.tensor(prompt).expand(b, -1, -1), words[:, 1:]], dim=1)
  proxy = torch.cat([with_mask[:, :1], torch.full((b, 3), 5), with_mask[:, 1:]], dim=1)
  with torch.no_grad():
    ref = model(inputs_embeds=inputs, attention_mask=(proxy != PAD).long(),
                position_ids=emb.create_position_ids_from_input_ids(proxy, PAD)).logits.numpy()
  ours = np.asarray(jax.jit(roberta_lib.RoBERTa(config).apply)({'params': params}, TOKENS, prompt))
  assert ours.shape == ref.shape == (3, 1 + 3 + 8, 64)
  assert np.abs(ours - ref).max() <= 1e-4
  positions = np.asarray(roberta_lib.prediction_positions(config, jnp.asarray(TOKENS), 3))
  np.testing.assert_array_equal(proxy.numpy()[np.arange(b), positions], MASK)


def test_position_ids_match_transformers():
  ids = torch.tensor(TOKENS, dtype=torch.long)
  embeddings = transformers.models.roberta.modeling_roberta.RobertaEmbeddings
  ref = embeddings.create_position_ids_from_input_ids(ids, PAD)
  np.testing.assert_array_equal(roberta_lib.position_ids(jnp.asarray(TOKENS) != PAD, PAD), ref.numpy())


def test_remat_and_batched_prompts_give_the_same_logits(tiny):
  _, config, params = tiny
  prompts = np.stack([_prompt(i) for i in range(3)])
  remat = jax.jit(roberta_lib.RoBERTa(config.replace(remat=True)).apply)
  batched = remat({'params': params}, TOKENS, prompts)
  single = jax.jit(roberta_lib.RoBERTa(config).apply)
  for i in range(3):
    np.testing.assert_allclose(batched[i:i + 1],
                               single({'params': params}, TOKENS[i:i + 1], prompts[i]), atol=1e-5)


def test_shape_and_config_errors(tiny):
  _, config, params = tiny
  model = roberta_lib.RoBERTa(config)
  with pytest.raises(ValueError, match=r'prompt shape \(5, 17\) does not fit .*expected \[P, 16\]'):
    model.apply({'params': params}, TOKENS, np.zeros((5, 17), np.float32))
  with pytest.raises(ValueError, match='at least 1 row'):
    model.apply({'params': params}, TOKENS, np.zeros((0, 16), np.float32))
  with pytest.raises(ValueError, match='does not fit max_position_embeddings=40'):
    model.apply({'params': params}, np.zeros((1, 39), np.int32))
  with pytest.raises(ValueError, match='hidden_size 16 is not a multiple of num_attention_heads 3'):
    config.replace(num_attention_heads=3)
  with pytest.raises(ValueError, match="prompt_layout 'prefix' is not one of mask_slot, plain"):
    config.replace(prompt_layout='prefix')
  with pytest.raises(ValueError, match="unknown RoBERTa preset 'roberta_huge'"):
    roberta_lib.roberta_preset('roberta_huge')


def test_logical_axes_shard_like_t5():
  rules = partitioning.standard_logical_axis_rules()
  specs = nn.get_partition_spec(roberta_lib.abstract_params(roberta_lib.roberta_preset('roberta_tiny')))
  mesh_axes = jax.tree_util.tree_map(lambda s: tuple(nn.logical_to_mesh_axes(s, rules)), specs,
                                     is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))
  layer = mesh_axes['encoder']['layers_0']
  assert mesh_axes['embeddings']['word_embeddings']['embedding'] == ('model', None)
  assert mesh_axes['embeddings']['position_embeddings']['embedding'] == (None, None)
  assert mesh_axes['embeddings']['token_type_embeddings']['embedding'] == (None, None)
  assert layer['attention']['query']['kernel'] == (None, 'model')
  assert layer['attention']['out']['kernel'] == ('model', None)
  assert layer['mlp']['wi']['kernel'] == (None, 'model')
  assert layer['mlp']['wo']['kernel'] == ('model', None)
  assert mesh_axes['lm_head']['bias'] == ('model',)


def test_released_roberta_large_prompts_fit_the_large_preset(shared_fixtures):
  path = shared_fixtures / 'paper' / 'roberta_large_prompts' / 'random.npy'
  if not path.exists():
    pytest.skip(f'optional fixture {path} is absent')
  prompt = np.load(path, allow_pickle=False)
  config = roberta_lib.roberta_preset('roberta_large')
  backbone = RobertaBackbone(config, label_token_ids=(33407, 22173))
  batch = {'encoder_input_tokens': jnp.ones((2, 131), jnp.int32), 'label': jnp.zeros((2,), jnp.int32)}
  params = nn.meta.unbox(roberta_lib.abstract_params(config))
  out = jax.eval_shape(lambda p, q: backbone.score_labels(p, q, batch, jnp.array([[33407], [22173]])),
                       params, prompt)
  assert prompt.shape == (100, 1024) and out.shape == (2, 2)
  acts = jax.eval_shape(lambda p, q: backbone.ffn_activations(p, q, batch, 'encoder', FFN_HIDDEN),
                        params, prompt)
  assert acts.shape == (2, 24, 100 + 131, 4096)  # the paper's 231-slot input
