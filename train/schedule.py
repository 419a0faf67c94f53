"""Optimiser and learning-rate schedule: SGD (the authors' recipe) or AdamW, linear warm-up, then x0.1 steps."""

from __future__ import annotations

import bisect

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from yolact import YolactConfig

LR_DECAY = 0.1


def fit_schedule(cfg: YolactConfig, batch_size: int, iters: int | None, lr: float | None) -> YolactConfig:
    """The config with its schedule adapted to a run.

    As the authors do, a batch size other than the config's scales the learning rate up and the schedule
    (length, steps) down by the same factor. ``iters`` then sets the length, the steps keeping their
    fractions of it; ``lr`` overrides the scaled rate (the warm-up start keeps its ratio to the rate).
    """
    factor = batch_size / cfg.batch_size
    max_iter = max(1, round(cfg.max_iter / factor))
    steps = [s / factor for s in cfg.lr_steps]
    if iters is not None:
        steps = [s * iters / max_iter for s in steps]
        max_iter = iters
    new_lr = cfg.lr * factor if lr is None else lr
    return cfg.replace(
        batch_size=batch_size,
        max_iter=max_iter,
        lr_steps=tuple(round(s) for s in steps),
        lr=new_lr,
        warmup_init_lr=cfg.warmup_init_lr * new_lr / cfg.lr,
    )


def lr_multiplier(cfg: YolactConfig):
    """Iteration -> multiple of ``cfg.lr``: linear from ``warmup_init_lr`` over ``warmup_iters``, then
    x``LR_DECAY`` at each of ``lr_steps``."""
    start = cfg.warmup_init_lr / cfg.lr

    def multiplier(iteration: int) -> float:
        if iteration < cfg.warmup_iters:
            return start + (1.0 - start) * iteration / cfg.warmup_iters
        return LR_DECAY ** bisect.bisect_right(cfg.lr_steps, iteration)

    return multiplier


def build_optimizer(model: nn.Module, cfg: YolactConfig) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """The config's optimiser over every parameter (frozen ones get no gradient and so no update) and its
    scheduler.

    SGD decays every parameter, as the authors do. AdamW leaves 1-D parameters (norm scales, biases) out of
    weight decay: decaying them only fights the normalisation a from-scratch network relies on.
    """
    if cfg.optimizer == "adamw":
        params = list(model.parameters())
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return optimizer, LambdaLR(optimizer, lr_multiplier(cfg))
