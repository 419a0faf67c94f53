"""Batch inference over datasets on Ray Data: ``python -m runtime.batch SOURCE... --model M --out DIR``.

Images (folders, globs, list files, Parquet/Arrow tables; local or s3://, gs://, file://) are decoded in
Ray tasks and segmented by a pool of ``Segmenter`` actors; results go to Parquet parts (schema:
``results.RESULT_SCHEMA``), committed atomically, each path exactly once, so that a rerun resumes. Needs
``pip install ./runtime[batch]`` (ray[data], pyarrow). See docs/batch.md.
"""

import importlib.util

_missing = [name for name in ("ray", "pyarrow") if importlib.util.find_spec(name) is None]
if _missing:
    raise ImportError(f"runtime.batch needs {' and '.join(_missing)}: pip install './runtime[batch]' (ray[data] 2.60, pyarrow < 26)")

from .results import RESULT_SCHEMA, ResultsFolder, coco_results  # noqa: E402 (after the one-line error)

__all__ = ["RESULT_SCHEMA", "ResultsFolder", "coco_results"]
