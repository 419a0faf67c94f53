"""Every use of PyTriton's (``nvidia-pytriton``) private API and quirks, in one place, for the version it was
written against: its model config has no field for custom parameters, its server's log has no public
accessor, and its Python-backend stub loads whichever libpython the loader finds.

:func:`check_version` says when the installed PyTriton is not one these were written for; a changed private
attribute then fails here with a message naming the version, not deep in the server.
"""

from __future__ import annotations

import importlib.metadata
import os
import sysconfig
from typing import Any, Sequence

TESTED_VERSIONS = ("0.7.",)  # nvidia-pytriton releases this adapter was written and tested against


class PyTritonChanged(RuntimeError):
    """The installed PyTriton lacks a private attribute this adapter uses; the message is one line."""


def installed_version() -> str:
    try:
        return importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def check_version() -> str | None:
    """None when the installed PyTriton is one this adapter was tested with, else a one-line warning."""
    version = installed_version()
    if version.startswith(TESTED_VERSIONS):
        return None
    return (
        f"nvidia-pytriton {version}: runtime.serve was tested with {', '.join(v + 'x' for v in TESTED_VERSIONS)}; "
        "if model parameters go missing, its private API has changed (runtime/pytriton_adapter.py)"
    )


def private(owner: Any, attribute: str) -> Any:
    try:
        return getattr(owner, attribute)
    except AttributeError:
        raise PyTritonChanged(
            f"nvidia-pytriton {installed_version()}: {type(owner).__name__}.{attribute} is gone; "
            f"runtime/pytriton_adapter.py was written for {', '.join(v + 'x' for v in TESTED_VERSIONS)}"
        ) from None


def publish_parameters(triton: Any, name: str, parameters: dict[str, str]) -> None:
    """Add ``parameters`` to the model config Triton publishes. PyTriton's ModelConfig has no field for
    them; the config it generates keeps its backend parameters in a dict that it writes out when the
    model loads (its Python backend reads only its own keys from it)."""
    for model in private(triton, "_model_manager").models:
        if model.model_name == name:
            private(model, "_get_triton_model_config")().backend_parameters.update(parameters)


def allow_ragged_inputs(triton: Any, model_name: str, input_names: Sequence[str]) -> None:
    """Declare ``input_names`` of the bound model ``model_name`` ragged in the config that PyTriton hands
    tritonserver. Call it after ``Triton.bind`` and before ``Triton.run``.

    PyTriton 0.7.0's ``Tensor`` has no such field, and its generated config lists inputs with name, dims,
    dtype and optional only. ``Triton.run`` loads the model with the config dict from the model's
    ``get_model_config()``; that dict gets the flag here (Triton then skips the equal-shape check between
    requests; each request's dims are still checked against ``[-1, -1, 3]``)."""
    (model,) = [model for model in private(triton, "_model_manager").models if model.model_name == model_name]
    generated = private(model, "get_model_config")

    def with_ragged_inputs() -> dict:
        config = generated()
        for spec in config.get("input", []):
            if spec["name"] in input_names:
                spec["allow_ragged_batch"] = True
        return config

    model.get_model_config = with_ragged_inputs


def triton_log_tail(triton: Any, lines: int = 20) -> str:
    """The last ``lines`` of tritonserver's log (empty when the server never started)."""
    server = getattr(triton, "_triton_server", None)
    return "\n".join(server.logs().splitlines()[-lines:]) if server is not None else ""


def python_backend_library_path() -> None:
    """Put this interpreter's own libpython first on LD_LIBRARY_PATH, for the tritonserver that PyTriton
    starts (it copies os.environ) and the Python-backend stub that tritonserver starts in turn.

    Why: the stub is linked against ``libpython3.X.so``, and the loader would otherwise find the system's
    (Debian's 3.11.2 here) instead of the running interpreter's (3.11.7): PyTriton's model code then fails
    on ``threading.RLock._recursion_count``, which 3.11.2 lacks (pytriton issue 51)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if not (sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir):
        return  # a static interpreter has no libpython of its own to offer
    paths = [path for path in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if path and path != libdir]
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *paths])
