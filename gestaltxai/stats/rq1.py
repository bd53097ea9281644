"""RQ1: do region coefficients separate each syndrome from unaffected faces?

For each method, each syndrome against the control class and each region,
as the reference's RQ1 notebook (pingouin's defaults written out in scipy):
Levene's test (centre: the median) for equal variances and Shapiro-Wilk on
each group, both at ``alpha_assumptions``; when the variances are equal and
both groups normal, a two-sided t-test (Welch's when the group sizes differ,
pingouin's ``correction='auto'``), else a two-sided Mann-Whitney U with the
continuity correction; Cohen's d with the pooled standard deviation, control
minus syndrome; Bonferroni over the method's tests (``m``, written in every
row), significant below ``alpha``.

The rows are the table's held-out rows (``role``), every fold pooled, each
explained by its own fold's model. The syndromes default to the paper's five
when the table's classes are NIH-Faces' (m = 15 per method), else to every
class but the control.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import stats

from gestaltxai import paper
from gestaltxai.stats.records import Skipped
from gestaltxai.artifacts.coefficient_table import RAW_SUFFIX, CoefficientTable

#: Shapiro-Wilk needs three values; fewer make a class untestable.
MIN_IMAGES = 3


@dataclasses.dataclass(frozen=True)
class Rq1Config:
  control: str = 'Unaffected'
  syndromes: Optional[tuple[str, ...]] = None  # None: default_syndromes()
  regions: Optional[tuple[str, ...]] = None    # None: every <region>_xai column
  alpha_assumptions: float = 0.05              # Levene and Shapiro-Wilk
  alpha: float = 0.001                         # after Bonferroni
  suffix: str = RAW_SUFFIX
  methods: Optional[tuple[str, ...]] = None    # None: every method of the table
  role: str = 'held_out'                       # the rows tested (gestaltxai.roles)


#: ``--syndromes all``: every class but the control, on NIH-Faces too.
ALL_SYNDROMES = 'all'


def default_syndromes(classes: Sequence[str], control: str) -> list[str]:
  """The paper's five on NIH-Faces' classes (with its control), else every other class."""
  if set(classes) == set(paper.NIH_CLASSES) and control == paper.CONTROL:
    return list(paper.SYNDROMES)
  return [c for c in classes if c != control]


def chosen_syndromes(classes: Sequence[str], config: 'Rq1Config') -> list[str]:
  """The syndromes ``config`` asks for: its own, every other class ('all'), or the default."""
  if config.syndromes is None:
    return default_syndromes(classes, config.control)
  if list(config.syndromes) == [ALL_SYNDROMES]:
    return [c for c in classes if c != config.control]
  return list(config.syndromes)


#: ``--methods paper``: the methods the RQ1 notebook's grid sums.
PAPER_METHODS = 'paper'


def chosen_methods(table: CoefficientTable, names: Optional[Sequence[str]]) -> list[str]:
  """The table's methods (None), the paper's 14 among them ('paper'), or ``names``, each
  required in the table."""
  present = table.methods
  if names is None:
    return present
  if list(names) == [PAPER_METHODS]:
    found = [m for m in paper.RQ1_METHODS if m in present]
    if not found:
      raise ValueError(f'--methods paper: none of the paper\'s RQ1 methods '
                       f'({", ".join(paper.RQ1_METHODS)}) is in {table.path} '
                       f'(methods: {", ".join(present)})')
    return found
  missing = [m for m in names if m not in present]
  if missing:
    raise ValueError(f'--methods: {", ".join(missing)} not in {table.path} (its methods: '
                     f'{", ".join(present)})')
  return list(dict.fromkeys(names))


@dataclasses.dataclass(frozen=True)
class Rq1Test:
  """One row of ``rq1.csv``."""
  method: str
  control: str
  syndrome: str
  region: str
  n_control: int
  n_syndrome: int
  mean_control: float
  mean_syndrome: float
  equal_var: bool
  normal_control: bool
  normal_syndrome: bool
  test: str            # 't-test', 'welch' or 'mwu'
  statistic: float     # t, or U of the control group
  p_value: float
  p_bonferroni: float
  m: int               # the Bonferroni count: the method's computed tests
  cohen_d: float
  significant: bool


def _student(control, syndrome):
  return stats.ttest_ind(control, syndrome, equal_var=True, alternative='two-sided')


def _welch(control, syndrome):
  return stats.ttest_ind(control, syndrome, equal_var=False, alternative='two-sided')


def _mann_whitney(control, syndrome):
  return stats.mannwhitneyu(control, syndrome, use_continuity=True, alternative='two-sided')


#: Test name -> f(control, syndrome) -> (statistic, p value).
TESTS: dict[str, Callable] = {'t-test': _student, 'welch': _welch, 'mwu': _mann_whitney}


def choose_test(equal_var: bool, normal_control: bool, normal_syndrome: bool,
                n_control: int, n_syndrome: int) -> str:
  """The reference's choice: a t-test only for normal groups of equal variance."""
  if not (equal_var and normal_control and normal_syndrome):
    return 'mwu'
  return 't-test' if n_control == n_syndrome else 'welch'


def cohen_d(control: np.ndarray, syndrome: np.ndarray) -> float:
  """(mean control - mean syndrome) / pooled standard deviation (ddof 1 per group)."""
  n1, n2 = len(control), len(syndrome)
  pooled = np.sqrt(((n1 - 1) * control.var(ddof=1) + (n2 - 1) * syndrome.var(ddof=1))
                   / (n1 + n2 - 2))
  return float((control.mean() - syndrome.mean()) / pooled)


def compare_groups(control: np.ndarray, syndrome: np.ndarray,
                   alpha_assumptions: float = 0.05) -> dict:
  """Assumption checks, the chosen test and the effect size for two samples (float64, no NaN).

  Returns:
    the :class:`Rq1Test` fields from ``n_control`` to ``p_value`` and
    ``cohen_d``.
  """
  control = np.asarray(control, np.float64)
  syndrome = np.asarray(syndrome, np.float64)
  with warnings.catch_warnings():
    # Constant groups make scipy warn and return NaN or p = 1; the row shows it.
    warnings.simplefilter('ignore', RuntimeWarning)
    warnings.simplefilter('ignore', UserWarning)
    equal_var = bool(stats.levene(control, syndrome, center='median').pvalue > alpha_assumptions)
    normal_control = bool(stats.shapiro(control).pvalue > alpha_assumptions)
    normal_syndrome = bool(stats.shapiro(syndrome).pvalue > alpha_assumptions)
    test = choose_test(equal_var, normal_control, normal_syndrome, len(control), len(syndrome))
    statistic, p_value = TESTS[test](control, syndrome)
    effect = cohen_d(control, syndrome)
  return dict(n_control=len(control), n_syndrome=len(syndrome),
              mean_control=float(control.mean()), mean_syndrome=float(syndrome.mean()),
              equal_var=equal_var, normal_control=normal_control,
              normal_syndrome=normal_syndrome, test=test, statistic=float(statistic),
              p_value=float(p_value), cohen_d=effect)


def bonferroni(p_values: Sequence[float]) -> np.ndarray:
  """p * m, capped at 1, with m the number of p values that are not NaN."""
  p = np.asarray(p_values, np.float64)
  return np.minimum(p * np.count_nonzero(~np.isnan(p)), 1.0)


def _untestable(table, method, group, region, values, column, role) -> Optional[str]:
  """Why a group cannot be tested, or None."""
  if np.isnan(table[column][table.select(method=method, role=role)]).all():
    return f'column {column} is all NaN for {method}'
  if len(values) < MIN_IMAGES:
    return (f'{group} has {len(values)} image(s) with a {column} coefficient; '
            f'the tests need {MIN_IMAGES}')
  return None


def rq1(table: CoefficientTable,
        config: Rq1Config = Rq1Config()) -> tuple[list[Rq1Test], list[Skipped]]:
  """Every (method, syndrome, region) test of the table, and the ones that could not run.

  Tests that cannot run (no control class, a class with fewer than
  :data:`MIN_IMAGES` coefficients, an all-NaN column) are listed in the
  second result with the reason; the others are computed, and Bonferroni
  counts only computed tests.
  """
  classes = table.classes
  syndromes = chosen_syndromes(classes, config)
  regions = list(config.regions) if config.regions is not None else table.regions(config.suffix)
  tests, skipped = [], []

  def skip(method, syndrome, region, reason):
    skipped.append(Skipped('rq1', method, syndrome, region, reason))

  for method in chosen_methods(table, config.methods):
    computed = []
    for syndrome in syndromes:
      for region in regions:
        column = f'{region}{config.suffix}'
        if column not in table:
          skip(method, syndrome, region, f'{table.path} has no column {column}')
          continue
        groups = {}
        for group in (config.control, syndrome):
          values = table[column][table.select(method=method, label=group, role=config.role)]
          groups[group] = values[~np.isnan(values)]
        if config.control not in classes:
          reason = (f'no control class {config.control!r} in {table.path} '
                    f'(classes: {", ".join(classes)})')
        else:
          reason = (_untestable(table, method, config.control, region, groups[config.control],
                                column, config.role)
                    or _untestable(table, method, syndrome, region, groups[syndrome], column,
                                   config.role))
        if reason:
          skip(method, syndrome, region, reason)
          continue
        fields = compare_groups(groups[config.control], groups[syndrome],
                                config.alpha_assumptions)
        computed.append(dict(method=method, control=config.control, syndrome=syndrome,
                             region=region, **fields))
    corrected = bonferroni([row['p_value'] for row in computed])
    m = int(np.count_nonzero([not np.isnan(row['p_value']) for row in computed]))
    tests += [Rq1Test(**row, p_bonferroni=float(p), m=m,
                      significant=bool(p < config.alpha))
              for row, p in zip(computed, corrected)]
  return tests, skipped


@dataclasses.dataclass(frozen=True)
class Rq1Summary:
  """Significant tests per method and (syndrome, region): ``counts[m, c]`` of ``cells[c]``."""
  methods: list[str]
  cells: list[tuple[str, str]]
  counts: np.ndarray      # (methods, cells) int: 1 significant, 0 not, -1 not computed

  def header(self) -> list[str]:
    return ['method', *(f'{syndrome}:{region}' for syndrome, region in self.cells), 'significant',
            'tests']

  def rows(self) -> list[list]:
    """One row per method, then the totals over methods (the reference's summary table)."""
    computed = self.counts >= 0
    significant = np.where(computed, self.counts, 0)
    rows = [[method, *('' if c < 0 else c for c in counts), int(s.sum()), int(done.sum())]
            for method, counts, s, done in zip(self.methods, self.counts.tolist(), significant,
                                               computed)]
    totals = significant.sum(0)
    return rows + [['all methods', *totals.tolist(), int(totals.sum()), int(computed.sum())]]

  def has_notebook_columns(self) -> bool:
    """Whether the tests hold the two syndromes the notebook's grid mixes up."""
    return {NOTEBOOK_COPIED_FROM, NOTEBOOK_COPIED_TO} <= {s for s, _ in self.cells}

  def by_region(self, notebook_bug: bool = False) -> tuple[list[str], list[str], np.ndarray]:
    """(regions, syndromes, (regions, syndromes) significant counts over methods).

    ``notebook_bug``: the grid as the reference's RQ1 notebook printed it, whose KS
    column repeats Angelman's counts (it adds Angelman's result into KS), for
    comparison with the paper's table only.
    """
    syndromes = list(dict.fromkeys(s for s, _ in self.cells))
    regions = list(dict.fromkeys(r for _, r in self.cells))
    totals = np.maximum(self.counts, 0).sum(0)
    grid = np.zeros((len(regions), len(syndromes)), np.int64)
    for (syndrome, region), total in zip(self.cells, totals):
      grid[regions.index(region), syndromes.index(syndrome)] = total
    if notebook_bug:
      if not self.has_notebook_columns():
        raise ValueError(f'the notebook\'s grid copies {NOTEBOOK_COPIED_FROM} into '
                         f'{NOTEBOOK_COPIED_TO}; the tests hold {", ".join(syndromes)}')
      grid[:, syndromes.index(NOTEBOOK_COPIED_TO)] = grid[:, syndromes.index(NOTEBOOK_COPIED_FROM)]
    return regions, syndromes, grid


#: The RQ1 notebook's summary adds Angelman's result into the KS column (a bug we do not
#: copy, but can show: ``gestaltxai stats --notebook-grid``).
NOTEBOOK_COPIED_FROM, NOTEBOOK_COPIED_TO = 'Angelman', 'KS'


def summarize(tests: Sequence[Rq1Test]) -> Rq1Summary:
  """Counts of significant tests; KS's own column (the reference added Angelman's into it)."""
  methods = list(dict.fromkeys(t.method for t in tests))
  cells = list(dict.fromkeys((t.syndrome, t.region) for t in tests))
  counts = np.full((len(methods), len(cells)), -1, np.int64)
  for t in tests:
    counts[methods.index(t.method), cells.index((t.syndrome, t.region))] = int(t.significant)
  return Rq1Summary(methods, cells, counts)
