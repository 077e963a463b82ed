"""An example encoder plug-in: mean and standard deviation of RGB per grid cell.

Load it with ``workbench.models.load_plugin("examples/my_encoder_plugin.py")`` (or a dotted module name, or list
it under ``plugins`` in a config); the import registers the encoder, and a config's encoder section then refers to
it by its name under ``type``: ``image_encoder = {type = "example_grid_rgb", grid = 2}``.

Options are declared once, with their defaults, in ``defaults``; ``Encoder.__init__`` fills them in and stores each
as an attribute, and the resolved options are saved with every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from workbench.models import Encoder, register_encoder


@register_encoder
class GridRGBEncoder(Encoder):
    """Per-cell RGB mean and standard deviation on a ``grid`` x ``grid`` split of a 32x32 resize."""

    name = "example_grid_rgb"
    modality = "image"
    description = "Example plug-in: RGB mean/std per grid cell."
    defaults = {"grid": 2}
    grid: int

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.grid < 1 or 32 % self.grid:
            raise ValueError(f"grid must divide 32, got {self.grid}")
        self.dim = self.grid * self.grid * 6

    def preprocess(self, items: list[Image.Image]) -> torch.Tensor:
        pixels = np.stack([np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.float32) / 255 for im in items])
        cell = 32 // self.grid
        cells = pixels.reshape(len(items), self.grid, cell, self.grid, cell, 3).transpose(0, 1, 3, 2, 4, 5)
        cells = cells.reshape(len(items), self.grid * self.grid, cell * cell, 3)
        return torch.from_numpy(np.concatenate([cells.mean(2), cells.std(2)], axis=-1).reshape(len(items), -1))

    def forward(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        return batch.to(device)
