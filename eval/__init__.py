"""Evaluation with pycocotools: ``python -m eval``."""
