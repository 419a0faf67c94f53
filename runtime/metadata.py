"""What the runtime reads from a model's ``yolact.*`` metadata (written by ``python -m export``)."""

from __future__ import annotations

import json
from pathlib import Path

from contract import CLASS_NAMES_KEY

from .errors import ModelError


def class_names_from(metadata: dict[str, str], model: Path) -> list[str]:
    """The class names (index = class id); their absence marks a model that ``python -m export`` did not
    write."""
    if CLASS_NAMES_KEY not in metadata:
        raise ModelError(f"{model}: no YOLACT metadata ({CLASS_NAMES_KEY} missing): not a model written by python -m export")
    try:
        names = json.loads(metadata[CLASS_NAMES_KEY])
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ModelError(f"{model}: metadata {CLASS_NAMES_KEY} is not a JSON list of names")
    return names
