"""``python -m prune_torch``."""

import sys

from prune_torch._cli import main

sys.exit(main())
