"""One command-line convention for every entry, as ``python -m X`` and as ``yolact <sub>``: ``--help`` exits 0,
a bad option exits 2 and a missing file exits 2, each error one line ``<prog>: error: ...`` on stderr.

Most cases call the entries' ``main`` in this process (the ``python -m`` module calls the same function;
importing torch once keeps this test cheap); the subprocess cases check the wiring of ``python -m``, of the
``yolact`` command (``python -m yolact_cli``, what ``[project.scripts]`` installs) and of ``yolact-run``, and
that the runtime's subcommands never import torch.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import yolact_cli
from command_line import EXIT_USAGE

REPO = Path(__file__).resolve().parents[1]
MISSING = "/no/such/place/missing"

# yolact subcommand -> (its python -m name, the module whose main it runs, arguments naming a missing file).
ENTRIES = {
    "train": ("train", "train.cli", ["--config", "yolact_tiny", "--train-images", MISSING, "--train-annotations", MISSING + ".json"]),
    "eval": ("eval", "eval.__main__", ["--weights", MISSING + ".pth"]),
    "predict": ("yolact.predict", "yolact.predict", [MISSING + ".png", "--weights", MISSING + ".pth", "--out", "{tmp}/out"]),
    "export": ("export", "export.__main__", ["--weights", MISSING + ".pth", "--out", "{tmp}/model.onnx"]),
    "run": ("runtime", "runtime.__main__", ["--model", MISSING + ".onnx", MISSING + ".jpg", "--out", "{tmp}/out"]),
    "batch": ("runtime.batch", "runtime.batch.__main__", [MISSING + ".jpg", "--model", MISSING + ".onnx", "--out", "{tmp}/out"]),
    "benchmark": ("benchmarks.mask_rescoring", "benchmarks.mask_rescoring", ["--weights", MISSING + ".pth"]),
}


def call(main, argv: list[str]) -> int:
    """The exit status of ``main(argv)``, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def forms(sub: str) -> list[tuple[str, object, list[str]]]:
    """(program name, main, argument prefix) of the entry as ``python -m`` and as ``yolact <sub>``."""
    name, module, _ = ENTRIES[sub]
    yolact_name = f"yolact {sub}" + (f" {name.rsplit('.', 1)[1]}" if sub == "benchmark" else "")
    prefix = [sub, name.rsplit(".", 1)[1]] if sub == "benchmark" else [sub]
    return [(f"python -m {name}", importlib.import_module(module).main, []), (yolact_name, yolact_cli.main, prefix)]


def one_line_error(err: str, prog: str) -> str:
    line = err.strip()
    assert "\n" not in line and line.startswith(f"{prog}: error: "), err
    return line


@pytest.mark.parametrize("sub", ENTRIES)
def test_help_bad_option_and_missing_file(sub, tmp_path, capsys):
    missing_file_args = [a.format(tmp=tmp_path) for a in ENTRIES[sub][2]]
    for prog, main, prefix in forms(sub):
        assert call(main, [*prefix, "--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: {prog} ")

        assert call(main, [*prefix, *missing_file_args, "--no-such-option"]) == EXIT_USAGE
        assert "--no-such-option" in one_line_error(capsys.readouterr().err, prog)

        assert call(main, [*prefix, *missing_file_args]) == EXIT_USAGE
        assert MISSING in one_line_error(capsys.readouterr().err, prog)
    assert not (tmp_path / "out").exists() and not (tmp_path / "model.onnx").exists()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120
    )


SERVE = ["--model", MISSING + ".onnx"]  # the model is opened first: no Triton needed to refuse it
RUN = ["--model", MISSING + ".onnx", MISSING + ".jpg", "--out", MISSING]
PROCESSES = [
    ("python -m runtime.serve", ["-m", "runtime.serve"], SERVE),
    ("yolact serve", ["-m", "yolact_cli", "serve"], SERVE),
    ("yolact-run serve", ["-m", "runtime.cli", "serve"], SERVE),
    ("python -m runtime", ["-m", "runtime"], RUN),
    ("yolact run", ["-m", "yolact_cli", "run"], RUN),
    ("yolact-run run", ["-m", "runtime.cli", "run"], RUN),
]  # the torch entries run in this process above: a process of their own costs an import of torch each


@pytest.mark.parametrize("prog, command, missing_file_args", PROCESSES, ids=[p[0] for p in PROCESSES])
def test_commands_as_processes(prog, command, missing_file_args):
    bad = run(*command, *missing_file_args, "--no-such-option")
    assert bad.returncode == 2 and "--no-such-option" in one_line_error(bad.stderr, prog)
    missing = run(*command, *missing_file_args)
    assert missing.returncode == 2 and MISSING in one_line_error(missing.stderr, prog)


def test_the_runtime_subcommands_never_import_torch():
    check = "import sys, atexit; atexit.register(lambda: print('torch' in sys.modules)); from yolact_cli import main; main(sys.argv[1:])"
    for sub in ("run", "serve"):
        done = run("-c", check, sub, "--help")
        assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "False", done.stdout + done.stderr


def test_the_command_lists_its_subcommands_and_refuses_unknown_ones(capsys):
    assert yolact_cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"\n  {sub} " in listing for sub in ("train", "eval", "predict", "export", "run", "serve", "benchmark"))
    assert yolact_cli.main(["tarin"]) == EXIT_USAGE
    assert "unknown command 'tarin'" in one_line_error(capsys.readouterr().err, "yolact")
    assert yolact_cli.main(["benchmark", "fsp"]) == EXIT_USAGE
    assert "unknown benchmark 'fsp'" in one_line_error(capsys.readouterr().err, "yolact benchmark")
    assert yolact_cli.main(["benchmark", "--help"]) == 0
    assert "fps" in capsys.readouterr().out.split("NAME: ")[1].split(", ")


def test_the_packages_install_the_commands():
    toolkit = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert toolkit["project"]["scripts"]["yolact"] == "yolact_cli:main"
    runtime = tomllib.loads((REPO / "runtime" / "pyproject.toml").read_text())
    assert runtime["project"]["scripts"]["yolact-run"] == "runtime.cli:main"
