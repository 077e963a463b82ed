"""Evaluation workbench for product image-text matching models."""

__version__ = "0.1.0"
