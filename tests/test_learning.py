"""The pipeline learns: the tiny config, trained briefly on a few embedded images, detects them again.

This guards the whole recipe at once (anchors, matching, losses, optimiser, schedule, augmentation): a
break in any of them leaves the AP near 0.
"""

import json

import pytest

from train import TrainOptions, run_training
from yolact.data import ensure_shapes_dataset


@pytest.fixture(scope="module")
def eight_images(tmp_path_factory):
    return ensure_shapes_dataset(tmp_path_factory.mktemp("learn") / "shapes", num_train=8, num_val=1)


def test_tiny_config_learns_its_training_images(eight_images, tmp_path):
    shapes = eight_images
    result = run_training(
        TrainOptions(
            config="yolact_tiny",
            train_images=shapes.train_images,
            train_annotations=shapes.train_annotations,
            val_images=shapes.train_images,  # scored on the images it saw: this proves learning, not generalising
            val_annotations=shapes.train_annotations,
            iters=250,
            batch_size=8,
            lr=2e-3,
            workers=0,
            eval_every=125,
            out=tmp_path / "run",
            progress=False,
        )
    )
    assert result.metrics["box/AP"] >= 0.5, result.metrics
    assert result.metrics["mask/AP"] > 0.05, result.metrics
    # The run evaluated as it went, logged AP and loss parts, and drew its curves.
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if "box/AP" in r] == [125, 250]
    assert {"loss/box", "loss/conf", "loss/mask", "loss/segm"} <= set(rows[1])  # rows[0]: the precision used
    assert (tmp_path / "run" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
