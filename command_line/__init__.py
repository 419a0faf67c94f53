"""The command-line convention of every entry of the toolkit (``python -m train``, ``eval``, ``export``,
``yolact.predict``, ``runtime``, ``runtime.serve``, the benchmarks, and the ``yolact`` command that runs them):
one parser (:func:`entry_parser`), one error wrapper (:func:`entry_point`), one set of exit codes.

Exit codes: 0 success; 1 a failure while working (``EXIT_FAILURE``); 2 a usage error or bad input
(``EXIT_USAGE``): a bad option, a missing or unreadable file, a model or image that cannot be used. Every
error is one line on stderr, ``<prog>: error: <what, naming the file or option>``.

It sits below every floor and needs nothing but the standard library, so that the torch-free runtime can
ship it: ``runtime/command_line`` links here, and ``pip install ./runtime`` installs it as this top-level
package.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, NoReturn, Sequence

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

# The name the ``yolact`` command runs an entry under ("yolact export"), set while it runs one; the
# entry's own ``python -m`` name otherwise.
_invoked_as: list[str] = []

Main = Callable[[Sequence[str] | None], int]


class OneLineParser(argparse.ArgumentParser):
    """Reports a bad option in one line (no usage block), with exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """Bad input that an entry finds after parsing (exit 2); the message is one line naming the culprit."""


class WorkFailed(Exception):
    """A failure while working on good input (exit 1); the message is one line."""


def program_name(default: str) -> str:
    """The name errors and ``--help`` show: ``default`` (``python -m X``), or ``yolact <sub>`` when the
    ``yolact`` command runs the entry."""
    return _invoked_as[-1] if _invoked_as else default


def description(doc: str | None) -> str:
    """An entry's ``--help`` description: the first paragraph of its module docstring, without reST marks."""
    return (doc or "").strip().split("\n\n", 1)[0].replace("``", "").replace("\n", " ")


def entry_parser(prog: str, doc: str | None, **kwargs) -> OneLineParser:
    """The parser of an entry: named ``prog`` (or as the ``yolact`` command runs it), described by ``doc``'s
    first paragraph."""
    return OneLineParser(prog=program_name(prog), description=description(doc), **kwargs)


def error_line(exc: BaseException, limit: int = 300) -> str:
    """One line for an exception: an OSError as ``<file>: <reason>``, others by their message's first line."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def entry_point(
    prog: str,
    bad_input: tuple[type[BaseException], ...] = (),
    failures: tuple[type[BaseException], ...] = (),
) -> Callable[[Main], Main]:
    """Wraps an entry's ``main(argv) -> int`` so that an error ends in one line on stderr and its exit code:
    ``failures`` (and :class:`WorkFailed`) exit 1; ``bad_input`` (and :class:`UsageError`, ``OSError``,
    ``ValueError``) exit 2. ``failures`` are checked first, so a subclass of a bad-input type can be one."""

    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv)
            except (WorkFailed, *failures) as exc:
                return report(exc, EXIT_FAILURE)
            except (UsageError, OSError, ValueError, *bad_input) as exc:
                return report(exc, EXIT_USAGE)

        def report(exc: BaseException, code: int) -> int:
            print(f"{program_name(prog)}: error: {error_line(exc)}", file=sys.stderr)
            return code

        return run

    return wrap


def run_as(name: str, main: Main, argv: Sequence[str]) -> int:
    """Runs an entry's ``main`` under another program name (the ``yolact`` command's ``yolact export``)."""
    _invoked_as.append(name)
    try:
        return main(list(argv))
    finally:
        _invoked_as.pop()


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def image_size(parser: argparse.ArgumentParser, text: str, option: str = "--image-size") -> tuple[int, int]:
    """``HxW`` (e.g. 480x640) as (height, width); otherwise the parser's one-line error on ``option``."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        parser.error(f"{option} {text!r}: expected HxW, e.g. 480x640")
    return height, width


class Command(NamedTuple):
    """A subcommand: the module whose ``main(argv)`` it runs (its ``python -m`` entry), and one line of help.
    With ``family`` the next argument names a module of that package (``yolact benchmark fps``)."""

    module: str
    summary: str
    family: bool = False


def dispatch(prog: str, commands: Mapping[str, Command], argv: Sequence[str] | None = None) -> int:
    """Runs ``prog <command> [options]``: the command's module is imported only when it runs (so a torch-free
    command never imports torch), and its ``main`` runs as ``<prog> <command>`` with the rest of ``argv``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(command_help(prog, commands))
        return EXIT_OK if argv else EXIT_USAGE
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"{prog}: error: unknown command {name!r} (choose {', '.join(commands)})", file=sys.stderr)
        return EXIT_USAGE
    command = commands[name]
    module, shown = command.module, f"{prog} {name}"
    if command.family:
        members = family_members(command.module)
        if not rest or rest[0] in ("-h", "--help"):
            print(f"usage: {shown} NAME [options]\n\n{command.summary}\nNAME: {', '.join(members)}")
            return EXIT_OK if rest else EXIT_USAGE
        if rest[0] not in members:
            print(f"{shown}: error: unknown {name} {rest[0]!r} (choose {', '.join(members)})", file=sys.stderr)
            return EXIT_USAGE
        module, shown, rest = f"{command.module}.{rest[0]}", f"{shown} {rest[0]}", rest[1:]
    return run_as(shown, importlib.import_module(module).main, rest)


def command_help(prog: str, commands: Mapping[str, Command]) -> str:
    width = max(len(name) for name in commands)
    rows = "\n".join(f"  {name:<{width}}  {command.summary}" for name, command in commands.items())
    return (
        f"usage: {prog} COMMAND [options]   ({prog} COMMAND --help for a command's options)\n\ncommands:\n{rows}\n\n"
        f"exit status: 0 success, 1 a failure while working, 2 a usage error or bad input"
    )


def family_members(package: str) -> list[str]:
    """The modules of ``package`` that are command-line entries (they use :func:`entry_point`), found
    without importing them."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    return sorted(
        info.name
        for info in pkgutil.iter_modules(folders)
        if "@entry_point(" in Path(folders[0], f"{info.name}.py").read_text(encoding="utf-8", errors="replace")
    )
