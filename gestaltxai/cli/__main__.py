"""python -m gestaltxai.cli"""

import sys

from gestaltxai.cli import main

sys.exit(main())
