"""Compatibility re-export of the builders' names (schema, folds, face_builder, sources, build)."""

# pylint: disable=unused-import
from gestaltxai.data.build import DatasetMismatchError, build  # noqa: F401
from gestaltxai.data.examples import SIZE, aligned_example  # noqa: F401
from gestaltxai.data.face_builder import FaceDatasetBuilder, Skipped, write_hpo  # noqa: F401
from gestaltxai.data.folds import (DEFAULT_FOLDS, DEFAULT_SEED, MIN_CLASSES,  # noqa: F401
                                   MIN_FOLDS, check_num_folds, fold_means_bgr,
                                   stratified_folds)
from gestaltxai.data.schema import (SPLITS, TFDS_SPLIT, complete_datasets,  # noqa: F401
                                    hpo_dir, split_roles)
from gestaltxai.data.sources import (NIH_CLASSES, NIH_FOLDS, FolderFaces, NihFaces,  # noqa: F401
                                     SyntheticFaces)
