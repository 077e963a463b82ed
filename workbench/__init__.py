"""Evaluation workbench for product image-text matching models."""

import os

# OpenMP threads that spin while waiting make torch 10x slower as soon as another process (or the app's own
# decode threads) competes for the cores: measured 1.6 s vs 0.15 s per training batch of the small CNN on 2 busy
# cores. Passive waiting costs nothing measurable on an idle machine. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
