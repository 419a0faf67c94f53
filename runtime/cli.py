"""``yolact-run``: the torch-free runtime's own command (``pip install ./runtime``), one subcommand per entry.

``yolact-run run ...`` is ``python -m runtime ...``; ``yolact-run serve ...`` is ``python -m runtime.serve ...``;
``yolact-run batch ...`` is ``python -m runtime.batch ...``.
The toolkit's ``yolact`` command offers the same subcommands.
"""

from __future__ import annotations

import sys
from typing import Sequence

from command_line import Command, dispatch

COMMANDS = {
    "run": Command("runtime.__main__", "segment images, folders and videos with an exported model (python -m runtime)"),
    "serve": Command("runtime.serve", "serve an exported model with Triton (python -m runtime.serve)"),
    "batch": Command("runtime.batch.__main__", "segment a whole dataset on Ray Data, resumable (python -m runtime.batch)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("yolact-run", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
