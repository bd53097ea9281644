"""The paper's statistics: RQ1 (syndrome vs control per region) and RQ2 (agreement with HPO).

scipy and NumPy only. ``read_table`` reads the coefficient table, ``rq1`` and
``rq2`` compute the tests and list what they had to skip and why,
``write_results`` writes ``rq1.csv``, ``rq1_summary.csv``, ``rq2.csv``,
``rq2_summary.csv`` and ``skipped.csv``.
"""

from gestaltxai.stats.hpo import HpoAnnotations, hpo_region_grouping, read_hpo
from gestaltxai.stats.records import Skipped, read_rows, write_rows
from gestaltxai.stats.results import (NothingComputed, Results, check_computed, compute,
                                      read_results, role_census, write_results)
from gestaltxai.stats.rq1 import (Rq1Config, Rq1Summary, Rq1Test, bonferroni, choose_test,
                                  cohen_d, compare_groups, default_syndromes, rq1)
from gestaltxai.stats.rq1 import summarize as summarize_rq1
from gestaltxai.stats.rq2 import Rq2Config, Rq2Correlation, Rq2Summary, rq2, spearman
from gestaltxai.stats.rq2 import summarize as summarize_rq2
from gestaltxai.artifacts.coefficient_table import CoefficientTable, read_table

__all__ = ['CoefficientTable', 'HpoAnnotations', 'NothingComputed', 'Results', 'Rq1Config',
           'Rq1Summary', 'Rq1Test', 'Rq2Config', 'Rq2Correlation', 'Rq2Summary', 'Skipped',
           'bonferroni', 'check_computed', 'choose_test', 'cohen_d', 'compare_groups', 'compute',
           'default_syndromes', 'hpo_region_grouping', 'read_hpo', 'read_results', 'read_rows',
           'read_table', 'role_census', 'rq1', 'rq2', 'spearman', 'summarize_rq1',
           'summarize_rq2', 'write_results', 'write_rows']
