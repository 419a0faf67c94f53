"""Requests of mixed image sizes in one Triton execution: ragged batching, then one graph run per size.

Triton's dynamic batcher only puts requests together whose inputs have the same shape, unless the input is
declared ``allow_ragged_batch``: then it batches requests of any image size, up to ``max_batch_size``
images, and hands them to the model as separate requests (a Python backend, as PyTriton's, sees each
request's own tensor; no padding, no concatenation). The model function groups them by image size and runs
each size group through the graph as one batch, so every image is computed as the in-process runtime
computes it (the graph resizes inside), and the clients' wire format is unchanged: a ``[B, H, W, 3]`` UINT8
tensor per request.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

# PyTriton 0.7.0 answers one execution with all of its responses or with one error, so a request the model
# function refuses fails the requests of other sizes batched with it. Its error ends with this sentence, in
# which the refused image's size lets a client tell "mine was refused" from "mine was only batched with it":
# runtime's Triton client sends its request again in the second case.
BATCHED_WITH_REFUSED = "requests batched with a refused {width}x{height} image fail with it: send those again"
REFUSED_SIZE_PATTERN = re.compile(BATCHED_WITH_REFUSED.format(width=r"(\d+)", height=r"(\d+)"))


def refused_size(message: str) -> tuple[int, int] | None:
    """(width, height) of the refused image that failed an execution, from the server's error; None when
    ``message`` is not that error."""
    found = REFUSED_SIZE_PATTERN.search(message)
    return (int(found[1]), int(found[2])) if found else None


def size_groups(batches: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices into ``batches`` (each [B, H, W, 3]) grouped by image size (H, W), in order of first arrival;
    each group keeps its requests' arrival order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, batch in enumerate(batches):
        groups.setdefault(batch.shape[1:3], []).append(index)
    return list(groups.values())


def infer_by_size(infer: Callable[[np.ndarray], dict[str, np.ndarray]], batches: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The outputs of each request (name -> [B_i, ...]), in request order. ``batches``: one [B_i, H_i, W_i, 3]
    uint8 array per request, of any sizes; the requests of one size go through ``infer`` as one batch
    (Triton's max_batch_size bounds the images of a whole execution, so of each group too)."""
    answers: list[dict[str, np.ndarray]] = [{} for _ in batches]
    for group in size_groups(batches):
        members = [batches[index] for index in group]
        outputs = infer(np.concatenate(members) if len(members) > 1 else members[0])
        bounds = np.cumsum([0, *(len(batch) for batch in members)])
        for index, start, stop in zip(group, bounds[:-1], bounds[1:]):
            answers[index] = {name: value[start:stop] for name, value in outputs.items()}
    return answers
