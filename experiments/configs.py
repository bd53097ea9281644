"""The named training configurations moved into the package: :mod:`gestaltxai.train.configs`.

Kept so scripts that import ``experiments.configs`` still run.
"""

from gestaltxai.train.configs import (CONFIGS, DEMO_SIZES, DLIB, REFERENCE, TINY,  # noqa: F401
                                      DemoSize, get_config)
