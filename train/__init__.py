"""Training: ``python -m train`` (SGD with warm-up, checkpoints, resume, DDP)."""
