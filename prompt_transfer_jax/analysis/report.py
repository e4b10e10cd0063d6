"""The analysis report: PNG heatmaps and charts plus a Markdown and an HTML page linking them.

Input is the `indicators.json` content (see `transferability`), optionally with `hit_rates`
(see `recommend`). Figures: the transfer matrix raw and relative to the target's own score, every
similarity matrix, the Spearman values beside the paper's, with activations the share of
activated neurons per layer group and the Spearman of ON per group, and, with a `cross_model`
entry (`ptj project zero-shot` output), the cross-model zero-shot heatmaps.
"""
from __future__ import annotations

import html
import os
from typing import Optional

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prompt_transfer_jax.files import atomic_write  # noqa: E402
from prompt_transfer_jax.analysis.indicators import INDICATORS  # noqa: E402
from prompt_transfer_jax.analysis.spearman import relative_transfer  # noqa: E402

_ANNOTATE_MAX = 20  # write values into heatmap cells up to this many rows/columns


def _save(fig, path: str) -> None:
  try:
    with atomic_write(path, 'wb') as f:
      fig.savefig(f, format='png', dpi=110, bbox_inches='tight')
  finally:
    plt.close(fig)


def heatmap(matrix, rows, cols, title: str, path: str, xlabel: str = '', ylabel: str = '',
            cmap: str = 'viridis', fmt: str = '{:.2g}') -> None:
  m = np.asarray(matrix, np.float64)
  size = max(4.0, 0.45 * max(m.shape) + 2.5)
  fig, ax = plt.subplots(figsize=(size * max(1.0, m.shape[1] / max(m.shape[0], 1)) ** 0.5, size))
  im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, aspect='auto')
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  ax.set_xticks(range(len(cols)), labels=cols, rotation=60, ha='right', fontsize=8)
  ax.set_yticks(range(len(rows)), labels=rows, fontsize=8)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  if max(m.shape) <= _ANNOTATE_MAX:
    for (i, j), v in np.ndenumerate(m):
      if np.isfinite(v):
        r, g, b, _ = im.cmap(im.norm(v))
        dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
        ax.text(j, i, fmt.format(v), ha='center', va='center', fontsize=6,
                color='white' if dark else 'black')
  _save(fig, path)


def spearman_chart(result: dict, path: str) -> None:
  """Grouped bars: our Spearman (x100) and the paper's RoBERTa-Large / T5-XXL values."""
  names = [n for n in INDICATORS if n in result['spearman']]
  series = [('ours', [result['spearman'][n] for n in names])]
  series += [(f'paper {model}', [vals[n] for n in names])
             for model, vals in result['paper_spearman'].items()]
  fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4))
  width = 0.8 / len(series)
  for k, (label, values) in enumerate(series):
    ys = [np.nan if v is None else v for v in values]
    ax.bar(np.arange(len(names)) + (k - (len(series) - 1) / 2) * width, ys, width, label=label)
  ax.set_xticks(range(len(names)), labels=names)
  ax.axhline(0, color='black', linewidth=0.6)
  ax.set_ylabel("Spearman's rho x100")
  ax.set_title('Indicator vs zero-shot transfer')
  ax.legend(fontsize=8)
  _save(fig, path)


def group_spearman_chart(groups: dict, path: str) -> None:
  names = list(groups['spearman'])
  values = [np.nan if groups['spearman'][n]['value'] is None else groups['spearman'][n]['value']
            for n in names]
  fig, ax = plt.subplots(figsize=(1.0 * len(names) + 2, 4))
  ax.bar(range(len(names)), values, color='tab:red')
  ax.set_xticks(range(len(names)), labels=names, rotation=30, ha='right')
  ax.axhline(0, color='black', linewidth=0.6)
  ax.set_ylabel("Spearman's rho x100 (ON)")
  ax.set_title('ON per layer group vs transfer')
  _save(fig, path)


def cross_model_heatmaps(cross: dict, fig_path) -> None:
  """Cross-model zero-shot (`ptj project zero-shot` output): Proj(P_src_t) on each target task t,
  one column per projector (training method and tasks), raw and relative to the target's own."""
  columns = [c['name'] for c in cross['projectors']]
  heatmap(cross['scores'], cross['targets'], columns, 'Cross-model zero-shot (raw score)',
          fig_path('cross_model_raw'), 'projector (method:training tasks)', 'target task',
          cmap='Greens', fmt='{:.1f}')
  if cross.get('relative') is not None:
    rel = [[np.nan if v is None else v for v in row] for row in cross['relative']]
    heatmap(rel, cross['targets'], columns, 'Cross-model zero-shot (% of own PT score)',
            fig_path('cross_model_relative'), 'projector (method:training tasks)', 'target task',
            cmap='Greens', fmt='{:.0f}')


def render_report(result: dict, out_dir: str, title: str = 'Prompt transferability') -> dict:
  """Writes every figure and `report.md` / `report.html` into `out_dir`; returns name -> path."""
  os.makedirs(out_dir, exist_ok=True)
  tasks = result['tasks']
  transfer = np.asarray(result['transfer'], np.float64)
  figures = {}

  def fig_path(name):
    figures[name] = os.path.join(out_dir, f'{name}.png')
    return figures[name]

  heatmap(transfer, tasks, tasks, 'Zero-shot transfer (raw score)', fig_path('transfer_raw'),
          'source prompt', 'target task', cmap='Blues', fmt='{:.1f}')
  heatmap(relative_transfer(transfer), tasks, tasks, 'Relative transfer (% of own PT score)',
          fig_path('transfer_relative'), 'source prompt', 'target task', cmap='Blues', fmt='{:.0f}')
  for name, m in result['similarity'].items():
    heatmap(m, tasks, tasks, f'{name} similarity', fig_path(f'similarity_{name}'),
            'source prompt', 'target prompt')
  spearman_chart(result, fig_path('spearman'))
  groups = result.get('layer_groups')
  if groups:
    group_names = [g['name'] for g in groups['groups']]
    heatmap(groups['activated_distribution'], tasks, group_names,
            'Share of activated neurons per layer group', fig_path('activated_neurons_by_layer_group'),
            'layer group', 'task prompt', cmap='Reds')
    if 'spearman' in groups:
      group_spearman_chart(groups, fig_path('on_spearman_by_layer_group'))
  cross = result.get('cross_model')
  if cross:
    cross_model_heatmaps(cross, fig_path)
  markdown = _markdown(result, figures, title)
  for name, text in (('report.md', markdown), ('report.html', _html(result, figures, title))):
    with atomic_write(os.path.join(out_dir, name)) as f:
      f.write(text)
  return figures


def _fmt(x: Optional[float]) -> str:
  return 'n/a' if x is None else f'{x:.1f}'


def _spearman_rows(result: dict) -> list:
  rows = []
  for name in INDICATORS:
    if name not in result['spearman']:
      continue
    d = result['spearman_detail'][name]
    rows.append([name, _fmt(result['spearman'][name]), f'[{_fmt(d["ci95"][0])}, {_fmt(d["ci95"][1])}]',
                 str(d['n_targets'])] + [_fmt(v[name]) for v in result['paper_spearman'].values()])
  return rows


def _tables(result: dict) -> list:
  """(heading, header, rows) of every table in the report."""
  header = ['indicator', 'ours (x100)', 'bootstrap 95% CI', 'targets']
  header += [f'paper {m}' for m in result['paper_spearman']]
  tables = [("Spearman's correlation with zero-shot transfer", header, _spearman_rows(result))]
  groups = result.get('layer_groups')
  if groups:
    rows = []
    dist = np.asarray(groups['activated_distribution'])
    for k, g in enumerate(groups['groups']):
      rho = groups.get('spearman', {}).get(g['name'], {}).get('value')
      rows.append([g['name'], f'{100 * dist[:, k].mean():.1f}',
                   f'{groups["mean_pairwise_on"][g["name"]]:.3f}', _fmt(rho)])
    tables.append(('Activated neurons by layer group',
                   ['layer group', 'mean share of activated neurons (%)', 'mean ON between tasks',
                    'Spearman of ON (x100)'], rows))
  hits = result.get('hit_rates')
  if hits:
    ks = sorted({k for h in hits.values() for k in h['hit_rate']}, key=int)
    rows = [[name] + [f'{100 * h["hit_rate"][k]:.0f}% (chance {100 * h["chance"][k]:.0f}%)' for k in ks]
            for name, h in hits.items()]
    tables.append(('Recommendation: best zero-shot source found (leave-one-out)',
                   ['indicator'] + [f'top-{k}' for k in ks], rows))
  return tables


def _markdown(result: dict, figures: dict, title: str) -> str:
  lines = [f'# {title}', '', f'Tasks ({len(result["tasks"])}): {", ".join(result["tasks"])}', '',
           'Spearman: per target task over all source prompts (the target\'s own included), '
           'averaged over targets, x100; the interval resamples targets.', '']
  if result.get('warnings'):
    lines += ['## Warnings', ''] + [f'- {w}' for w in result['warnings']] + ['']
  for heading, header, rows in _tables(result):
    lines += [f'## {heading}', '', '| ' + ' | '.join(header) + ' |',
              '|' + '---|' * len(header)] + ['| ' + ' | '.join(r) + ' |' for r in rows] + ['']
  lines += ['## Figures', '']
  for name, path in figures.items():
    lines += [f'### {name}', '', f'![{name}]({os.path.basename(path)})', '']
  return '\n'.join(lines)


def _html(result: dict, figures: dict, title: str) -> str:
  esc = html.escape
  parts = [f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>',
           '<style>body{font-family:sans-serif;max-width:1100px;margin:auto}'
           'table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px}</style>',
           f'</head><body><h1>{esc(title)}</h1>',
           f'<p>Tasks ({len(result["tasks"])}): {esc(", ".join(result["tasks"]))}</p>']
  if result.get('warnings'):
    parts.append('<h2>Warnings</h2><ul>' + ''.join(f'<li>{esc(w)}</li>' for w in result['warnings'])
                 + '</ul>')
  for heading, header, rows in _tables(result):
    parts.append(f'<h2>{esc(heading)}</h2><table><tr>'
                 + ''.join(f'<th>{esc(h)}</th>' for h in header) + '</tr>')
    parts += ['<tr>' + ''.join(f'<td>{esc(c)}</td>' for c in r) + '</tr>' for r in rows]
    parts.append('</table>')
  parts.append('<h2>Figures</h2>')
  for name, path in figures.items():
    src = esc(os.path.basename(path))
    parts.append(f'<h3>{esc(name)}</h3><a href="{src}"><img src="{src}" alt="{esc(name)}" '
                 'style="max-width:100%"></a>')
  parts.append('</body></html>\n')
  return '\n'.join(parts)
