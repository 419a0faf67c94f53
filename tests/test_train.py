"""Training on a tiny generated dataset with real components: steps, resume, non-finite skip, DDP, CLI."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from train import TrainOptions, run_training
from train.distributed import DistContext
from train.trainer import Trainer
from yolact import Yolact, get_config, load_model
from yolact.data import ensure_shapes_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return ensure_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", num_train=8, num_val=4)


def tiny_options(shapes, out: Path, **changes) -> TrainOptions:
    options = TrainOptions(
        config="yolact_tiny",
        train_images=shapes.train_images,
        train_annotations=shapes.train_annotations,
        iters=4,
        batch_size=2,
        workers=0,
        out=out,
        log_every=1,
        progress=False,
    )
    return replace(options, **changes)


def logged_losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {row["iteration"]: row["loss/total"] for row in rows if "loss/total" in row}


def test_frozen_batch_norm_survives_train():
    model = Yolact(get_config("yolact_tiny"))
    model.train()
    model.freeze_bn()
    model.eval().train()
    assert not model.backbone.bn1.training and model.fpn.training
    assert not model.backbone.bn1.weight.requires_grad


def test_a_few_steps_reduce_the_loss(shapes, tmp_path):
    trainer = Trainer(tiny_options(shapes, tmp_path, lr=2e-3), DistContext())
    images, targets = next(trainer.stream.batches(0))
    losses = [trainer.train_step(images, targets)[0]["total"] for _ in range(8)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_non_finite_loss_skips_the_step(shapes, tmp_path):
    trainer = Trainer(tiny_options(shapes, tmp_path), DistContext())
    images, targets = next(trainer.stream.batches(0))
    criterion = trainer.criterion

    def poisoned(output, targets, maskiou_net, maskiou_weight):
        losses = criterion(output, targets, maskiou_net, maskiou_weight)
        losses["total"] = losses["total"] * float("nan")
        return losses

    trainer.criterion = poisoned
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    _, stepped = trainer.train_step(images, targets)
    assert not stepped and trainer.skipped_steps == 1
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("config", ["yolact_tiny", "yolact_plus_tiny"])
def test_resume_continues_exactly(shapes, tmp_path, config):
    full = run_training(tiny_options(shapes, tmp_path / "full", config=config, checkpoint_every=2))
    assert full.iteration == 4 and (tmp_path / "full" / "ckpt_2.pth").is_file()
    resumed = run_training(tiny_options(shapes, tmp_path / "resumed", config=config, resume=tmp_path / "full" / "ckpt_2.pth"))
    assert resumed.iteration == 4
    uninterrupted, continued = logged_losses(tmp_path / "full"), logged_losses(tmp_path / "resumed")
    assert sorted(continued) == [3, 4]
    assert continued[3] == pytest.approx(uninterrupted[3], rel=1e-6, abs=1e-6)
    assert continued[4] == pytest.approx(uninterrupted[4], rel=1e-4, abs=1e-5)


def test_mask_iou_loss_counts_from_its_start_iteration(shapes, tmp_path):
    """Before ``maskiou_start_iter`` the mask-IoU loss is reported but gives the net no gradient; from then on
    it trains the net."""
    options = tiny_options(
        shapes, tmp_path, config="yolact_plus_tiny", batch_size=4, config_overrides=(("maskiou_start_iter", 1), ("discard_mask_area", 0))
    )
    trainer = Trainer(options, DistContext())
    images, targets = next(trainer.stream.batches(0))
    head = list(trainer.model.maskiou_net.parameters())
    # Predicting 0.5 for every mask (a fresh net may predict exactly the first targets, 0, and learn nothing).
    final = [m for m in trainer.model.maskiou_net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.constant_(final.bias, 0.5)
    torch.nn.init.zeros_(final.weight)
    for iteration in (0, 1):
        losses, _ = trainer.train_step(images, targets)
        assert losses["maskiou"] > 0
        gradient = sum(float(p.grad.abs().sum()) for p in head)
        assert (gradient == 0) if iteration == 0 else (gradient > 0), (iteration, gradient)


def _ddp_worker(rank: int, world_size: int, store: str, options: TrainOptions, result_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        trainer = Trainer(options, DistContext(rank, world_size, rank))
        trainer.run()
        torch.save(trainer.model.state_dict(), Path(result_dir) / f"rank{rank}.pth")
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_processes_keep_identical_weights(shapes, tmp_path):
    options = tiny_options(shapes, tmp_path / "out", iters=3, batch_size=4)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), options, str(tmp_path)), nprocs=2)
    weights = [torch.load(tmp_path / f"rank{r}.pth") for r in range(2)]
    initial = Yolact(get_config("yolact_tiny", class_names=shapes.class_names)).state_dict()
    assert any(not torch.equal(weights[0][k], initial[k]) for k in initial if k.endswith("weight"))
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0, msg=key)
    assert (tmp_path / "out" / "weights.pth").is_file()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_writes_loadable_weights(shapes, tmp_path):
    out = tmp_path / "run"
    proc = run_cli(
        "--config",
        "yolact_tiny",
        "--train-images",
        str(shapes.train_images),
        "--train-annotations",
        str(shapes.train_annotations),
        "--iters",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    model = load_model(out / "weights.pth")
    assert model.cfg.name == "yolact_tiny" and model.cfg.class_names == shapes.class_names
    assert {"last.pth", "ckpt_2.pth", "log.jsonl"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--train-images", "/no/such/dir", "--train-annotations", "/no/such.json"], "/no/such/dir"),
        (["--iters", "-3"], "--iters"),
        (["--resume", "{bad}"], "--resume"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(shapes, tmp_path, args, culprit):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    args = [a.replace("{bad}", str(bad)) for a in args]
    if "--train-images" not in args:
        args += ["--train-images", str(shapes.train_images), "--train-annotations", str(shapes.train_annotations)]
    out = tmp_path / "out"
    proc = run_cli("--config", "yolact_tiny", "--out", str(out), *args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and culprit in proc.stderr, proc.stderr
    assert not out.exists()


def test_adamw_leaves_norms_and_biases_out_of_weight_decay():
    from train.schedule import build_optimizer

    model = Yolact(get_config("yolact_tiny"))
    optimizer, _ = build_optimizer(model, model.cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    decayed, undecayed = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and undecayed["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in undecayed["params"])
    assert len(decayed["params"]) + len(undecayed["params"]) == len(list(model.parameters()))
    sgd, _ = build_optimizer(model, model.cfg.replace(optimizer="sgd"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["weight_decay"] == model.cfg.weight_decay


def test_set_changes_config_fields(shapes, tmp_path):
    from train.options import parse_options

    options = parse_options(["--set", "max_size=96", "--set", "lr_steps=[3]", "--set", "optimizer=sgd"])
    assert options.config_overrides == (("max_size", 96), ("lr_steps", (3,)), ("optimizer", "sgd"))
    result = run_training(replace(tiny_options(shapes, tmp_path / "run"), config_overrides=options.config_overrides))
    assert load_model(result.out / "weights.pth").cfg.max_size == 96


@pytest.mark.parametrize(
    "value, culprit",
    [
        ("nope=1", "'nope=1'"),
        ("max_size", "'max_size'"),
        ("class_names=[1]", "class_names"),
        ("dcn_layers=0,0,0,1", "dcn_layers takes a JSON list"),
        ("max_size=big", "max_size takes an integer"),
        ("rescore_mask=1", "rescore_mask takes true or false"),
    ],
)
def test_set_rejects_unknown_fields_in_one_line(value, culprit):
    proc = run_cli("--set", value)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and culprit in proc.stderr, proc.stderr


def test_set_rejects_an_unknown_optimizer_in_one_line(shapes, tmp_path):
    proc = run_cli(
        "--config",
        "yolact_tiny",
        "--set",
        "optimizer=lion",
        "--train-images",
        str(shapes.train_images),
        "--train-annotations",
        str(shapes.train_annotations),
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "lion" in proc.stderr, proc.stderr
