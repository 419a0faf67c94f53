"""The training run: set-up from :class:`TrainOptions`, the loop, evaluation, logging, curves, checkpoints."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from yolact import Yolact, YolactConfig, get_config, save_weights
from yolact.backbone import torchvision_resnet_keys
from yolact.checkpoint import CheckpointError, load_state_dict_into
from yolact.data import CocoDataset, ensure_shapes_dataset, train_transform
from yolact.losses import YolactLoss
from yolact.model import YolactOutput

from .checkpoints import load_checkpoint, prune_checkpoints, restore_rng, rng_state, save_checkpoint
from .curves import draw_curves
from .data import TrainStream
from .distributed import DistContext, close_distributed, init_distributed
from .errors import TrainError
from .options import TrainOptions
from .schedule import build_optimizer, fit_schedule

# Config fields a resumed run may change: the schedule. Everything else must match the checkpoint.
SCHEDULE_FIELDS = frozenset({"lr", "batch_size", "max_iter", "lr_steps", "warmup_iters", "warmup_init_lr"})


@dataclass(frozen=True)
class DataPaths:
    train_images: Path
    train_annotations: Path
    val_images: Optional[Path]
    val_annotations: Optional[Path]


@dataclass
class TrainResult:
    """What a finished run left behind (filled on rank 0; other ranks get the iteration count only)."""

    out: Path
    iteration: int
    seconds: float
    skipped_steps: int
    metrics: dict[str, float]
    best_ap: float


def resolve_data(options: TrainOptions, ctx: DistContext) -> DataPaths:
    """Custom COCO paths, checked to exist, or the embedded shapes dataset (generated once, by rank 0)."""
    pairs = {
        "train": (options.train_images, options.train_annotations),
        "val": (options.val_images, options.val_annotations),
    }
    for split, (images, annotations) in pairs.items():
        if (images is None) != (annotations is None):
            raise TrainError(f"--{split}-images and --{split}-annotations go together; give both or neither")
        for option, path in ((f"--{split}-images", images), (f"--{split}-annotations", annotations)):
            if path is not None and not path.exists():
                raise TrainError(f"{option} {path}: no such file or folder")
    if options.train_images is not None:
        return DataPaths(options.train_images, options.train_annotations, options.val_images, options.val_annotations)
    if ctx.enabled:  # one process generates the cache, the others then read it
        if ctx.is_main:
            ensure_shapes_dataset()
        torch.distributed.barrier()
    shapes = ensure_shapes_dataset()
    return DataPaths(shapes.train_images, shapes.train_annotations, shapes.val_images, shapes.val_annotations)


def resolve_device(options: TrainOptions, ctx: DistContext) -> torch.device:
    name = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainError(f"--device {name}: not a device name (cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError(f"--device {name}: CUDA is not available on this machine")
        if ctx.enabled:
            device = torch.device("cuda", ctx.local_rank)
    return device


def check_resume_config(cfg: YolactConfig, saved: dict[str, Any], path: Path) -> None:
    """A checkpoint continues only the same model and loss: name, classes, architecture must match."""
    try:
        saved_cfg = YolactConfig.from_dict(saved)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"--resume {path}: its config is not readable ({exc})") from None
    ours, theirs = cfg.to_dict(), saved_cfg.to_dict()
    differing = sorted(k for k in ours if k not in SCHEDULE_FIELDS and ours[k] != theirs[k])
    if differing:
        shown = "; ".join(f"{k}: {theirs[k]!r} in the checkpoint, {ours[k]!r} now" for k in differing[:3])
        raise TrainError(f"--resume {path}: trained with another config ({shown})")


def load_pretrained_backbone(model: Yolact, path: Path) -> None:
    if model.cfg.backbone != "resnet":
        raise TrainError(f"--pretrained-backbone {path}: only ResNet backbones map torchvision weights")
    if not path.is_file():
        raise TrainError(f"--pretrained-backbone {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.backbone.load_state_dict(torchvision_resnet_keys(state))
    except Exception as exc:  # unreadable file or keys/shapes that do not fit
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainError(f"--pretrained-backbone {path}: not a fitting torchvision ResNet ({first_line})") from None


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (elsewhere bf16 autocast would be emulated, and slow)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # torch.cpu's capability probes are the ones its own oneDNN kernels are chosen by.
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def float_outputs(output: YolactOutput) -> YolactOutput:
    """The network's outputs in float32: the losses (matching, OHEM, BCE) run at full precision."""
    return YolactOutput(*(t.float() if torch.is_tensor(t) and t.is_floating_point() else t for t in output))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Owns the model, optimiser, data stream and output folder of one run (one per process under DDP)."""

    def __init__(self, options: TrainOptions, ctx: DistContext):
        self.options = options
        self.ctx = ctx
        self.device = resolve_device(options, ctx)
        self.data = resolve_data(options, ctx)
        dataset, batch_size = self.configure()
        resume_state = self.resume_state()
        self.build_model(resume_state, batch_size)
        self.wrap_network()
        self.criterion = YolactLoss(self.cfg)
        self.optimizer, self.scheduler = build_optimizer(self.model, self.cfg)
        self.restore_progress(resume_state)
        self.stream = TrainStream(dataset, self.per_rank_batch, self.ctx, options.seed, options.workers, self.device.type == "cuda")
        self.plan_evaluations()

    # -- set-up steps, in the order __init__ runs them ---------------------------------------------------

    def configure(self) -> tuple[CocoDataset, int]:
        """The training set, the config (its class names, the schedule fitted to the batch size and
        iterations) and the per-process batch; (dataset, total batch size)."""
        options, ctx = self.options, self.ctx
        try:
            base_cfg = get_config(options.config, **dict(options.config_overrides))
        except (TypeError, ValueError) as exc:
            raise TrainError(f"--set: {exc}") from None
        dataset = CocoDataset(self.data.train_images, self.data.train_annotations, train_transform(base_cfg))
        cfg = base_cfg.replace(class_names=tuple(dataset.class_names))

        batch_size = options.batch_size or cfg.batch_size
        if batch_size % ctx.world_size:
            raise TrainError(f"--batch-size {batch_size}: not divisible by the {ctx.world_size} processes")
        self.per_rank_batch = batch_size // ctx.world_size
        if len(dataset) < batch_size:
            raise TrainError(f"--train-images {self.data.train_images}: {len(dataset)} images, fewer than --batch-size {batch_size}")
        self.cfg = fit_schedule(cfg, batch_size, options.iters, options.lr)
        if options.sync_bn and not (ctx.enabled and self.device.type == "cuda"):
            raise TrainError("--sync-bn: needs several CUDA processes (torchrun --nproc_per_node N on GPUs)")
        return dataset, batch_size

    def resume_state(self) -> dict[str, Any] | None:
        """The --resume checkpoint, checked against this run's config (None without --resume)."""
        if self.options.resume is None:
            return None
        state = load_checkpoint(self.options.resume)
        check_resume_config(self.cfg, state["config"], self.options.resume)
        return state

    def build_model(self, resume_state: dict[str, Any] | None, batch_size: int) -> None:
        """The model, seeded, from the resumed weights or a pretrained backbone, with frozen batch norm
        below the config's batch, on the device in its memory format."""
        options = self.options
        seed_everything(options.seed)
        self.model = Yolact(self.cfg)
        if resume_state is not None:
            try:
                load_state_dict_into(self.model, resume_state["model"], f"--resume {options.resume}")
            except CheckpointError as exc:
                raise TrainError(str(exc)) from None
        elif options.pretrained_backbone is not None:
            load_pretrained_backbone(self.model, options.pretrained_backbone)
        bn_batch = batch_size if options.sync_bn else self.per_rank_batch
        self.model.train()
        self.model.freeze_bn(bn_batch < self.cfg.freeze_bn_below_batch)
        self.model.to(self.device)
        self.bf16 = self.cfg.train_precision == "bf16" and native_bf16(self.device)
        self.memory_format = torch.channels_last if self.bf16 else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)

    def wrap_network(self) -> None:
        """What the steps run: the model itself, or under DDP the model (with SyncBatchNorm) in
        DistributedDataParallel."""
        self.network: nn.Module = self.model
        if self.ctx.enabled:
            if self.options.sync_bn:
                self.network = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.network, device_ids=device_ids)

    def restore_progress(self, resume_state: dict[str, Any] | None) -> None:
        """Iteration, best AP, skipped steps, optimiser, scheduler and RNG state: from the resumed
        checkpoint, else a fresh start."""
        self.iteration = 0
        self.best_ap = -1.0
        self.skipped_steps = 0
        if resume_state is not None:
            self.optimizer.load_state_dict(resume_state["optimizer"])
            self.scheduler.load_state_dict(resume_state["scheduler"])
            self.iteration = int(resume_state["iteration"])
            self.best_ap = float(resume_state.get("best_ap", -1.0))
            self.skipped_steps = int(resume_state.get("skipped_steps", 0))
            restore_rng(resume_state["rng"])

    def plan_evaluations(self) -> None:
        """Evaluate and checkpoint every sixth of the run unless the options say otherwise."""
        sixth = max(1, self.cfg.max_iter // 6)
        self.eval_every = sixth if self.options.eval_every is None else self.options.eval_every
        self.checkpoint_every = self.options.checkpoint_every or self.eval_every or sixth
        self.out = self.options.out

    # -- one step ----------------------------------------------------------------------------------------
    def train_step(self, images: torch.Tensor, targets: list[dict]) -> tuple[dict[str, float], bool]:
        """Forward, backward and (unless the loss is non-finite on some rank) an optimiser step.

        Backward runs even on a non-finite loss so that every DDP rank takes part in the gradient
        reduction; the step is then skipped everywhere. Returns (loss terms, whether the step was taken).
        """
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        targets = [{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            output = self.network(images)
        maskiou_weight = float(self.iteration >= self.cfg.maskiou_start_iter)
        losses = self.criterion(float_outputs(output), targets, self.model.maskiou_net, maskiou_weight)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        finite = self.ctx.all_agree(bool(torch.isfinite(losses["total"]).item()), self.device)
        if finite and self.cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
        if finite:
            self.optimizer.step()
        else:
            self.skipped_steps += 1
        self.scheduler.step()
        self.iteration += 1
        return {k: float(v.detach()) for k, v in losses.items()}, finite

    # -- the loop ----------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        start = time.monotonic()
        deadline = None if self.options.time_limit is None else start + 60.0 * self.options.time_limit
        bar = tqdm(
            total=self.cfg.max_iter,
            initial=self.iteration,
            desc="train",
            dynamic_ncols=True,
            disable=not (self.ctx.is_main and self.options.progress),
        )
        batches = self.stream.batches(self.iteration)
        self.log(
            {"iteration": self.iteration, "precision": "bf16 autocast, channels-last" if self.bf16 else "fp32", "device": str(self.device)}
        )
        while self.iteration < self.cfg.max_iter:
            losses, stepped = self.train_step(*next(batches))
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            out_of_time = deadline is not None and self.ctx.any_rank(time.monotonic() >= deadline, self.device)
            finished = out_of_time or self.iteration == self.cfg.max_iter
            if not stepped:
                self.log(
                    {
                        "iteration": self.iteration,
                        "skipped": "non-finite loss",
                        "skipped_steps": self.skipped_steps,
                        **self.loss_fields(losses),
                    }
                )
                bar.write(f"iteration {self.iteration}: non-finite loss, step skipped ({self.skipped_steps} so far)")
            elif finished or self.iteration % self.options.log_every == 0:
                self.log(
                    {
                        "iteration": self.iteration,
                        "lr": self.scheduler.get_last_lr()[0],
                        **self.loss_fields(losses),
                        "time": time.monotonic() - start,
                    }
                )
            if finished:
                break
            if self.eval_every and self.iteration % self.eval_every == 0:
                self.evaluate(start)
            if self.iteration % self.checkpoint_every == 0:
                self.save()
        bar.close()
        metrics = self.evaluate(start)
        self.save()
        if self.ctx.is_main:
            save_weights(self.model, self.out / "weights.pth")
        return TrainResult(self.out, self.iteration, time.monotonic() - start, self.skipped_steps, metrics, self.best_ap)

    @staticmethod
    def loss_fields(losses: dict[str, float]) -> dict[str, float]:
        return {f"loss/{k}": v for k, v in losses.items()}

    def log(self, row: dict[str, Any]) -> None:
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def evaluate(self, start: float) -> dict[str, float]:
        """Val metrics on rank 0 (others return {} at once and wait at their next collective)."""
        if not self.ctx.is_main or self.data.val_images is None:
            return {}
        from yolact.evaluation import evaluate  # the evaluation stack is only needed with val data

        self.model.eval()
        try:
            result = evaluate(self.model, self.data.val_images, self.data.val_annotations, progress=False)
        finally:
            self.model.train()
        metrics = {k: float(v) for k, v in result.metrics.items()}
        self.log({"iteration": self.iteration, **metrics, "time": time.monotonic() - start})
        draw_curves(self.out / "log.jsonl", self.out / "curves.png")
        mask_ap = metrics.get("mask/AP", -1.0)
        if math.isfinite(mask_ap) and mask_ap > self.best_ap:
            self.best_ap = mask_ap
            save_checkpoint(self.out / "best.pth", self.checkpoint_state())
        return metrics

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration,
            "rng": rng_state(),
            "best_ap": self.best_ap,
            "skipped_steps": self.skipped_steps,
        }

    def save(self) -> None:
        """``last.pth`` and ``ckpt_<iteration>.pth`` (keeping the newest ``keep_last``), rank 0 only."""
        if not self.ctx.is_main:
            return
        state = self.checkpoint_state()
        save_checkpoint(self.out / "last.pth", state)
        save_checkpoint(self.out / f"ckpt_{self.iteration}.pth", state)
        prune_checkpoints(self.out, self.options.keep_last)


def run_training(options: TrainOptions) -> TrainResult:
    """Train as ``options`` say; under ``torchrun`` (or an initialised process group) as one DDP rank."""
    ctx = init_distributed((options.device or ("cuda" if torch.cuda.is_available() else "cpu")).split(":")[0])
    try:
        return Trainer(options, ctx).run()
    finally:
        close_distributed(ctx)
