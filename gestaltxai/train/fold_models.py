"""Which model explains each fold (a trained fold's chosen epoch, or one weights file for every
image) and loading it ready for inference: the seam extraction, evaluation and benchmarks share.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional, Sequence

from gestaltxai import provenance
from gestaltxai.artifacts.coefficient_table import NO_FOLD
from gestaltxai.artifacts.run_folder import fold_dir
from gestaltxai.errors import ParameterError
from gestaltxai.train import checkpoints

#: The input size of a VGGFace2 state dict's network (weights given as a file, not a run).
VGGFACE2_SIZE = 224


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A model ready to explain a fold: what it needs of the inputs, and its classes.

  Attributes:
    image_size: inputs are (B, image_size, image_size, 3) float32 BGR ...
    mean_bgr: ... minus this channel mean.
  """

  model: object
  variables: dict
  image_size: int
  mean_bgr: tuple[float, ...]
  classes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """Where a fold's model comes from: a trained fold's epoch folder, or a weights file."""

  path: pathlib.Path
  checkpoint: bool

  def load(self, dtype: Optional[str], classes: Sequence[str], dataset) -> LoadedModel:
    """The model, checked to have ``classes``; ``dtype`` (e.g. 'bfloat16') or the run's."""
    if self.checkpoint:
      model, variables, config, metadata = checkpoints.load_checkpoint(self.path)
      loaded = LoadedModel(model, variables, config.image_size, tuple(metadata['mean_bgr']),
                           tuple(metadata['classes']))
    else:
      from gestaltxai.models import ResNet50, load_vggface2  # pylint: disable=import-outside-toplevel
      variables = load_vggface2(self.path)
      head = variables['params']['fc']['bias'].shape[0]
      if head != len(classes):
        raise ValueError(f'{self.path} has a {head}-way head; the dataset has {len(classes)} '
                         'classes: give weights fine-tuned on its classes (a state dict '
                         '.npz or pickle, or a `gestaltxai train` fold)')
      loaded = LoadedModel(ResNet50(head), variables, VGGFACE2_SIZE,
                           tuple(dataset.mean_bgr(None)), tuple(classes))
    if list(loaded.classes) != list(classes):
      raise ValueError(f'{self.path} was trained on classes {list(loaded.classes)}; the '
                       f'dataset has {list(classes)}')
    if dtype is not None:
      from gestaltxai.models.contract import explainable  # pylint: disable=import-outside-toplevel
      loaded = dataclasses.replace(loaded, model=explainable(loaded.model).with_dtype(dtype))
    return loaded

  def fingerprint(self) -> str:
    """sha256 of the model's files (names and bytes)."""
    return provenance.file_fingerprint(self.path)


def best_epoch_dir(fold: pathlib.Path) -> pathlib.Path:
  """The folder of a trained fold's chosen epoch; a missing fold names the path."""
  if not fold.is_dir():
    raise FileNotFoundError(f'no trained model for {fold.name}: {fold} does not exist '
                            '(train it with `gestaltxai train`)')
  directory = checkpoints.checkpoint_dir(fold)
  manager = checkpoints.manager(directory, read_only=True)
  try:
    latest = manager.latest_step()
    if latest is None:
      raise FileNotFoundError(f'no complete checkpoint in {directory}')
    chosen = provenance.read_checkpoint_metadata(directory / str(latest))['best_epoch']
    return directory / str(chosen)
  finally:
    manager.close()


def weights_source(weights: pathlib.Path) -> ModelSource:
  """A weights file, a trained fold (its chosen epoch) or one epoch's checkpoint folder."""
  weights = pathlib.Path(weights)
  if not weights.exists():
    raise FileNotFoundError(f'no weights at {weights}')
  if weights.is_dir() and not weights.name.isdigit():
    return ModelSource(best_epoch_dir(weights), True)
  return ModelSource(weights, weights.is_dir())


def model_sources(dataset, *, runs: Optional[pathlib.Path] = None,
                  weights: Optional[pathlib.Path] = None,
                  folds: Optional[Sequence[int]] = None) -> dict[int, ModelSource]:
  """{fold: its model}: each asked fold's trained run under ``runs`` (every fold by default),
  or ``weights`` for every image under :data:`NO_FOLD`.

  Raises:
    ValueError: both or neither of ``runs`` and ``weights``; ``folds`` with
      ``weights``; a fold out of the dataset's range.
    FileNotFoundError: a fold not trained, or no weights there.
  """
  if (runs is None) == (weights is None):
    raise ParameterError('give either {runs} (a `gestaltxai train` output) or {weights} (one '
                         'model)')
  if weights is not None:
    if folds:
      raise ParameterError('{folds} go with {runs}; {weights} explain every image')
    return {NO_FOLD: weights_source(weights)}
  folds = sorted(folds or range(1, dataset.num_folds + 1))
  for fold in folds:
    if not 1 <= fold <= dataset.num_folds:
      raise ValueError(f'fold {fold} is out of range: {dataset.directory} has folds '
                       f'1..{dataset.num_folds}')
  return {fold: ModelSource(best_epoch_dir(fold_dir(runs, fold)), True) for fold in folds}


def checked_runs(sources: dict[int, ModelSource], dataset) -> dict[int, dict]:
  """{fold: its run's provenance}, refusing a run not trained on this dataset's split of its
  fold (the fold's held-out images would have been trained on)."""
  return {fold: provenance.check_run_for_extraction(source.path, dataset, fold)
          for fold, source in sources.items() if fold != NO_FOLD}
