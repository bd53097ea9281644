"""Data-parallel training over a device mesh, orbax checkpoints and fold evaluation.

* :func:`train_fold`: one fold end to end (resumable), writing ``RUNS/fold-K``.
* :func:`evaluate_runs`: test scores over folds -> ``RUNS/summary.json``.
* :func:`load_checkpoint`: a trained fold -> (model, variables, config, metadata).
* :class:`TrainConfig`, :class:`ModelConfig`: what a run does (named ones in
  :mod:`gestaltxai.train.configs`).
* :class:`DataParallel`, :func:`train_step`, :func:`eval_step`: the steps over a mesh.
* :func:`initialize_distributed`: join a multi-host run (``jax.distributed``).
"""

from gestaltxai.train.checkpoints import load_checkpoint
from gestaltxai.train.config import ModelConfig, TrainConfig
from gestaltxai.train.distributed import initialize as initialize_distributed
from gestaltxai.train.loop import evaluate_runs, train_fold
from gestaltxai.train.metrics import confusion_matrix, scores, summarize
from gestaltxai.train.optim import cosine_warm_restarts, make_optimizer
from gestaltxai.train.step import DataParallel, TrainState, eval_step, train_step

__all__ = ['DataParallel', 'ModelConfig', 'TrainConfig', 'TrainState', 'confusion_matrix',
           'cosine_warm_restarts', 'eval_step', 'evaluate_runs', 'initialize_distributed',
           'load_checkpoint', 'make_optimizer', 'scores', 'summarize', 'train_fold',
           'train_step']
