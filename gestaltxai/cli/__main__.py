"""python -m gestaltxai.cli"""

import sys

from gestaltxai.cli import console

sys.exit(console())
