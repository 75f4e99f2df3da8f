"""``python -m prune_onnx``: the command line."""

import sys

from prune_onnx._cli import main

sys.exit(main())
