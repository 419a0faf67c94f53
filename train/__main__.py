"""``python -m train [options]`` (see ``--help``); ``torchrun --nproc_per_node N -m train`` for DDP."""

import sys

from .cli import main

sys.exit(main())
