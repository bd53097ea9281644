"""Plots: coefficient distributions with RQ1 marks, training curves, confusion, method cost.

Each function returns a :class:`matplotlib.figure.Figure` built without pyplot.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

LABEL_POINTS = 8
CONTROL_COLOUR = '#9a9a9a'
SYNDROME_COLOUR = '#4c78a8'
SIGNIFICANT_COLOUR = '#e45756'
#: The training metrics drawn, as (key of a fold's epochs, panel title).
CURVES = (('loss', 'loss'), ('accuracy', 'accuracy'))
SPLIT_STYLES = {'train': '-', 'val': '--'}


def region_distributions(coefficients: Mapping[str, Mapping[str, np.ndarray]], *,
                         control: str, classes: Optional[Sequence[str]] = None,
                         significant: Optional[Mapping[tuple[str, str], bool]] = None,
                         title: str = '', mark_label: str = 'significant') -> Figure:
  """Box plots of region coefficients per class, the control first, one panel per region.

  Args:
    coefficients: {region: {class: (n,) values}} (NaN dropped here).
    control: the control class, drawn first and in grey.
    classes: the order of the other classes (default: as given).
    significant: {(class, region): True} for the tests to mark with a star
      and a red box (RQ1's ``significant``); missing pairs are unmarked.
    mark_label: the legend's words for a star (e.g. 'Bonferroni p < 0.001').
  """
  regions = list(coefficients)
  significant = significant or {}
  shown = 1 + max(len(by_class) for by_class in coefficients.values())
  fig = Figure(figsize=(max(3.2, 0.32 * shown + 0.8) * len(regions) + 0.4, 3.6),
               layout='constrained')
  axes = np.atleast_1d(fig.subplots(1, len(regions), squeeze=False)[0])
  for ax, region in zip(axes, regions):
    by_class = coefficients[region]
    order = [control] + [c for c in (classes or by_class) if c != control and c in by_class]
    data = [np.asarray(by_class.get(c, []), np.float64) for c in order]
    data = [d[np.isfinite(d)] for d in data]
    boxes = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=True,
                       flierprops={'markersize': 2, 'alpha': 0.5},
                       medianprops={'color': 'black', 'linewidth': 1})
    top = max((d.max() for d in data if d.size), default=1.0)
    bottom = min((d.min() for d in data if d.size), default=0.0)
    for position, (name, box) in enumerate(zip(order, boxes['boxes']), 1):
      marked = significant.get((name, region), False)
      box.set_facecolor(CONTROL_COLOUR if name == control
                        else SIGNIFICANT_COLOUR if marked else SYNDROME_COLOUR)
      box.set_alpha(0.75)
      if marked:
        ax.text(position, top + 0.04 * (top - bottom), '*', ha='center', va='bottom',
                fontsize=LABEL_POINTS + 6, color=SIGNIFICANT_COLOUR)
    ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.16 * (top - bottom) + 1e-12)
    ax.set_xticks(range(1, len(order) + 1), [f'{c} (n={len(d)})' for c, d in zip(order, data)],
                  rotation=60, ha='right', rotation_mode='anchor', fontsize=LABEL_POINTS - 1)
    ax.set_title(region, fontsize=LABEL_POINTS + 1)
    ax.tick_params(axis='y', labelsize=LABEL_POINTS - 1)
    ax.ticklabel_format(axis='y', style='sci', scilimits=(-2, 3))
    ax.grid(axis='y', alpha=0.3)
  axes[0].set_ylabel('region coefficient', fontsize=LABEL_POINTS)
  handles = [_patch(CONTROL_COLOUR, control), _patch(SYNDROME_COLOUR, 'not significant'),
             _patch(SIGNIFICANT_COLOUR, f'* {mark_label}')]
  fig.legend(handles=handles, loc='outside lower center', ncols=3, fontsize=LABEL_POINTS,
             frameon=False)
  if title:
    fig.suptitle(title, fontsize=LABEL_POINTS + 2)
  return fig


def _patch(colour, label):
  return Patch(facecolor=colour, alpha=0.75, label=label)


def training_curves(runs: Mapping[str, Sequence[Mapping]], *,
                    best_epochs: Optional[Mapping[str, int]] = None) -> Figure:
  """Loss and accuracy per epoch, train (solid) and validation (dashed), one colour per fold.

  Args:
    runs: {fold name: its ``FoldMetrics.epochs`` [{epoch, train_loss,
      train_accuracy, val_loss, val_accuracy}]}; missing keys are skipped.
    best_epochs: {fold name: best epoch}, marked with a dot on the validation
      curves.
  """
  best_epochs = best_epochs or {}
  palette = colormaps['tab10']
  fig = Figure(figsize=(9, 3.2), layout='constrained')
  axes = fig.subplots(1, len(CURVES))
  for ax, (metric, title) in zip(axes, CURVES):
    for i, (fold, epochs) in enumerate(runs.items()):
      colour = palette(i % palette.N)
      epoch = np.array([e.get('epoch', n + 1) for n, e in enumerate(epochs)])
      for split, style in SPLIT_STYLES.items():
        key = f'{split}_{metric}'
        values = np.array([e.get(key, np.nan) for e in epochs], np.float64)
        if np.isfinite(values).any():
          ax.plot(epoch, values, style, color=colour, linewidth=1.2)
        if split == 'val' and fold in best_epochs and best_epochs[fold] in epoch:
          at = int(np.flatnonzero(epoch == best_epochs[fold])[0])
          ax.plot(epoch[at], values[at], 'o', color=colour, markersize=4)
    ax.set_title(title, fontsize=LABEL_POINTS + 1)
    ax.set_xlabel('epoch', fontsize=LABEL_POINTS)
    ax.tick_params(labelsize=LABEL_POINTS - 1)
    ax.grid(alpha=0.3)
  handles = [Line2D([], [], color=palette(i % palette.N), label=fold)
             for i, fold in enumerate(runs)]
  handles += [Line2D([], [], color='black', linestyle=style, label=split)
              for split, style in SPLIT_STYLES.items()]
  handles.append(Line2D([], [], color='black', marker='o', linestyle='', label='best epoch'))
  fig.legend(handles=handles, loc='outside right center', fontsize=LABEL_POINTS - 1,
             frameon=False)
  return fig


def confusion_figure(confusion, classes: Sequence[str], *, normalize: bool = True,
                     title: str = '') -> Figure:
  """A confusion matrix (rows true class, columns predicted), counts written in the cells.

  Args:
    confusion: (K, K) counts.
    normalize: colour by the share of each true class (rows sum to 1).
  """
  counts = np.asarray(confusion, np.float64)
  if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(classes):
    raise ValueError(f'confusion has shape {counts.shape}; expected ({len(classes)},) * 2')
  totals = counts.sum(axis=1, keepdims=True)
  shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
  shown = shares if normalize else counts
  size = 1.2 + 0.42 * len(classes)
  fig = Figure(figsize=(size + 1.0, size), layout='constrained')
  ax = fig.subplots()
  image = ax.imshow(shown, cmap='Blues', vmin=0, vmax=1 if normalize else None)
  for (row, col), count in np.ndenumerate(counts):
    if count:
      ax.text(col, row, f'{count:g}', ha='center', va='center', fontsize=LABEL_POINTS - 1,
              color='white' if shown[row, col] > 0.6 * shown.max() else 'black')
  ticks = range(len(classes))
  ax.set_xticks(ticks, classes, rotation=60, ha='right', fontsize=LABEL_POINTS)
  ax.set_yticks(ticks, classes, fontsize=LABEL_POINTS)
  ax.set_xlabel('predicted', fontsize=LABEL_POINTS)
  ax.set_ylabel('true', fontsize=LABEL_POINTS)
  bar = fig.colorbar(image, ax=ax, shrink=0.8)
  bar.set_label('share of the true class' if normalize else 'images', fontsize=LABEL_POINTS)
  bar.ax.tick_params(labelsize=LABEL_POINTS - 1)
  if title:
    ax.set_title(title, fontsize=LABEL_POINTS + 1)
  return fig


def method_cost(records: Sequence[Mapping]) -> Figure:
  """Images per second of each method (log scale), one bar per (method, device, dtype, batch).

  Args:
    records: benchmark records with ``name``, ``images_per_s`` and
      optionally ``device``, ``dtype``, ``batch_size`` (the latest record of
      each key is drawn).
  """
  latest = {}
  for record in records:
    if record.get('images_per_s'):
      key = (record['name'], record.get('device', ''), record.get('dtype', ''),
             record.get('batch_size', ''))
      latest[key] = float(record['images_per_s'])
  if not latest:
    raise ValueError('no benchmark record with images_per_s')
  keys = sorted(latest, key=lambda k: latest[k])
  setups = list(dict.fromkeys(k[1:] for k in keys))
  speeds = np.array([latest[k] for k in keys])
  palette = colormaps['tab10']
  fig = Figure(figsize=(7.5, 1.0 + 0.26 * len(keys)), layout='constrained')
  ax = fig.subplots()
  low = speeds.min() / 2
  ax.barh(range(len(keys)), speeds - low, left=low,
          color=[palette(setups.index(k[1:]) % palette.N) for k in keys])
  for y, speed in enumerate(speeds):
    ax.text(speed * 1.05, y, f'{speed:.3g}', va='center', fontsize=LABEL_POINTS - 1)
  ax.set_xscale('log')
  ax.set_xlim(low, speeds.max() * 2.5)
  ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:g}'))
  ax.xaxis.set_minor_formatter(NullFormatter())
  ax.set_yticks(range(len(keys)), [k[0] for k in keys], fontsize=LABEL_POINTS - 1)
  ax.set_xlabel('images / s (log scale)', fontsize=LABEL_POINTS)
  ax.tick_params(axis='x', labelsize=LABEL_POINTS - 1)
  ax.grid(axis='x', alpha=0.3, which='both')
  names = [', '.join(str(v) for v in (device, dtype) if v) + (f', batch {batch}' if batch != ''
                                                             else '')
           for device, dtype, batch in setups]
  ax.legend(handles=[_patch(palette(i % palette.N), name) for i, name in enumerate(names)],
            fontsize=LABEL_POINTS - 2, loc='lower right')
  return fig


def effect_sizes(cohen_d, significant, *, methods: Sequence[str],
                 cells: Sequence[tuple[str, str]], mark_label: str = 'significant') -> Figure:
  """RQ1 at a glance: Cohen's d per method (rows) and (syndrome, region) (columns), stars marked.

  Args:
    cohen_d: (methods, cells) float, control minus syndrome as in RQ1's results
      (NaN: not computed). Drawn negated, so red means the syndrome's
      coefficients are higher than the control's.
    significant: (methods, cells) bool.
    cells: (syndrome, region) of each column.
  """
  shown = -np.asarray(cohen_d, np.float64)
  marks = np.asarray(significant, bool)
  if shown.shape != (len(methods), len(cells)) or marks.shape != shown.shape:
    raise ValueError(f'cohen_d {shown.shape} and significant {marks.shape} must both be '
                     f'({len(methods)}, {len(cells)})')
  limit = float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 1.0
  fig = Figure(figsize=(2.6 + 0.36 * len(cells), 1.9 + 0.3 * len(methods)),
               layout='constrained')
  ax = fig.subplots()
  image = ax.imshow(np.ma.masked_invalid(shown), cmap='RdBu_r', vmin=-limit, vmax=limit,
                    aspect='auto')
  for row, col in zip(*np.nonzero(marks)):
    dark = abs(shown[row, col]) > 0.6 * limit
    ax.text(col, row, '*', ha='center', va='center', fontsize=LABEL_POINTS + 4,
            color='white' if dark else 'black')
  ax.set_xticks(range(len(cells)), [f'{s} {r}' for s, r in cells], rotation=60, ha='right',
                fontsize=LABEL_POINTS - 1)
  ax.set_yticks(range(len(methods)), methods, fontsize=LABEL_POINTS - 1)
  syndromes = [s for s, _ in cells]
  for col in range(1, len(cells)):
    if syndromes[col] != syndromes[col - 1]:
      ax.axvline(col - 0.5, color='white', linewidth=2)
  bar = fig.colorbar(image, ax=ax, shrink=0.9, pad=0.01)
  bar.set_label("Cohen's d, syndrome - control", fontsize=LABEL_POINTS)
  bar.ax.tick_params(labelsize=LABEL_POINTS - 1)
  ax.set_title(f'* {mark_label}', fontsize=LABEL_POINTS, loc='left')
  return fig


def correlations(rows: Sequence, *, regions: Sequence[str], methods: Sequence[str]) -> Figure:
  """RQ2: Spearman r per fold (dots, with their intervals) and the mean over folds (bar).

  Args:
    rows: objects with ``method, fold, region, r, ci_low, ci_high``
      (:class:`gestaltxai.stats.Rq2Correlation`).
  """
  palette = colormaps['tab10']
  folds = sorted({row.fold for row in rows})
  fig = Figure(figsize=(2.6 * len(regions) + 1.4, 1.2 + 0.3 * len(methods)),
               layout='constrained')
  axes = np.atleast_1d(fig.subplots(1, len(regions), sharey=True, squeeze=False)[0])
  for ax, region in zip(axes, regions):
    for y, method in enumerate(methods):
      found = [row for row in rows if row.region == region and row.method == method]
      if not found:
        continue
      ax.barh(y, np.mean([row.r for row in found]), color='#cccccc', height=0.7)
      for row in found:
        offset = 0.5 * (folds.index(row.fold) / max(len(folds) - 1, 1) - 0.5)
        colour = palette(folds.index(row.fold) % palette.N)
        ax.plot([row.ci_low, row.ci_high], [y + offset] * 2, color=colour, linewidth=0.8,
                alpha=0.6)
        ax.plot(row.r, y + offset, 'o', color=colour, markersize=3)
    ax.axvline(0, color='black', linewidth=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xticks([-1, -0.5, 0, 0.5, 1])
    ax.set_title(region, fontsize=LABEL_POINTS + 1)
    ax.set_xlabel('Spearman r', fontsize=LABEL_POINTS)
    ax.tick_params(labelsize=LABEL_POINTS - 1)
    ax.grid(axis='x', alpha=0.3)
  axes[0].set_yticks(range(len(methods)), methods)
  axes[0].invert_yaxis()
  handles = [_patch('#cccccc', 'mean over folds')] + [
      _patch(palette(i % palette.N), f'fold {fold} (95% CI)') for i, fold in enumerate(folds)]
  fig.legend(handles=handles, loc='outside lower center', ncols=min(len(handles), 6),
             fontsize=LABEL_POINTS - 1, frameon=False)
  return fig


def ground_truth(summary: Mapping) -> Figure:
  """Each method's recovery of the planted regions (beside chance) and its sanity check.

  Args:
    summary: the demo's summary: {'methods': {name: {'recovery_classes',
      'recovery_images', 'chance_classes', 'chance_images',
      'randomisation_similarity', ...}}, 'randomisation_limit': the similarity
      at and above which a method fails the check}.
  """
  limit = summary['randomisation_limit']
  methods = list(summary['methods'])
  scores = summary['methods']
  fig = Figure(figsize=(10, 0.45 * len(methods) + 2.0), layout='constrained')
  recovery_axes, sanity_axes = fig.subplots(1, 2, sharey=True,
                                            gridspec_kw={'width_ratios': (3, 2)})
  rows = np.arange(len(methods))
  for offset, (key, label, colour) in enumerate((
      ('recovery_classes', 'trait classes (largest |d|)', SYNDROME_COLOUR),
      ('recovery_images', 'images (highest z-score)', '#72b7b2'))):
    values = [scores[m][key] for m in methods]
    recovery_axes.barh(rows + (offset - 0.5) * 0.38, values, height=0.38, color=colour,
                       label=label)
  chance = scores[methods[0]]['chance_classes']
  recovery_axes.axvline(chance, color=CONTROL_COLOUR, linestyle='--',
                        label=f'chance ({chance:.2f})')
  recovery_axes.set(xlim=(0, 1), xlabel='share in the planted region', yticks=rows,
                    yticklabels=methods, title='Recovery of the planted regions')
  recovery_axes.invert_yaxis()
  # Below the axes: inside, the legend would cover the last method's bars.
  recovery_axes.legend(loc='upper center', bbox_to_anchor=(0.5, -0.16), ncol=3,
                       fontsize=LABEL_POINTS, frameon=False)
  similarity = [scores[m]['randomisation_similarity'] for m in methods]
  sanity_axes.barh(rows, similarity, height=0.6,
                   color=[SIGNIFICANT_COLOUR if s >= limit else SYNDROME_COLOUR
                          for s in similarity])
  sanity_axes.axvline(limit, color=CONTROL_COLOUR, linestyle='--',
                      label=f'fails at {limit}')
  sanity_axes.set(xlim=(min(0.0, min(similarity) - 0.05), 1), xlabel='Spearman r with the trained '
                  'model\'s maps', title='Model randomisation (lower passes)')
  sanity_axes.legend(loc='upper center', bbox_to_anchor=(0.5, -0.16), fontsize=LABEL_POINTS,
                     frameon=False)
  return fig
