"""``python -m yolact_cli`` is the ``yolact`` command."""

import sys

from . import main

sys.exit(main())
