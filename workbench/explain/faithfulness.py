"""Faithfulness by deletion: remove the most relevant patches or words first and re-score.

If an explanation points at what the score depends on, deleting its top-k% units lowers the score faster than
deleting random ones (Petsiuk et al. 2018, RISE's deletion metric; Samek et al. 2017). Image units are the cells of
the relevance grid, filled with the photo's mean colour; text units are words, cut from the text. Deleted content is
new content, scored through the restored encoders and head like any photo or title. The area between the random
curve and the deletion curve (over the deleted fraction, 0..1) is the measure: positive when the explanation beats
chance, in score units; ``area_norm`` divides it by the whole drop (score with nothing deleted minus score with
everything deleted), so runs whose scores live on different scales can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from workbench.explain.base import SideExplanation, mean_fill
from workbench.explain.words import delete_spans
from workbench.run.restore import ImageItem, NewImage, NewText, RunModels, TextItem

FRACTIONS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
N_RANDOM = 8


@dataclass
class DeletionCurve:
    """Scores after deleting a fraction of the units, most relevant first and in random order (mean of orders)."""

    side: str
    method: str
    fractions: np.ndarray
    deletion: np.ndarray
    random: np.ndarray
    n_units: int

    @property
    def area(self) -> float:
        """∫ (random − deletion) d fraction: > 0 when the relevance order lowers the score faster than chance."""
        return float(np.trapezoid(self.random - self.deletion, self.fractions))

    @property
    def area_norm(self) -> float:
        """``area`` per unit of the whole drop (NaN when deleting everything does not lower the score)."""
        drop = float(self.deletion[0] - self.deletion[-1])
        return self.area / drop if drop > 1e-9 else float("nan")


def _orders(relevance: np.ndarray, n_random: int, seed: int) -> list[np.ndarray]:
    """The relevance order (ties broken at random, seeded) followed by ``n_random`` random orders."""
    rng = np.random.default_rng(seed)
    flat = np.asarray(relevance, dtype=np.float64).ravel()
    by_relevance = np.lexsort((rng.permutation(flat.size), -flat))
    return [by_relevance] + [rng.permutation(flat.size) for _ in range(n_random)]


def _counts(n_units: int, fractions: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(fractions) * n_units).astype(int)


def mask_cells(image: Image.Image, shape: tuple[int, int], cells: np.ndarray,
               box: tuple[float, float, float, float]) -> Image.Image:
    """``image`` with the given cells (row-major over a ``shape`` grid spanning ``box``) filled with its mean
    colour."""
    pixels = np.asarray(image.convert("RGB")).copy()
    height, width = pixels.shape[:2]
    fill = np.asarray(mean_fill(image))[0, 0]
    rows, cols = shape
    left, top, right, bottom = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    for cell in cells:
        r, c = divmod(int(cell), cols)
        y0, y1 = int(round(top + r * (bottom - top) / rows)), int(round(top + (r + 1) * (bottom - top) / rows))
        x0, x1 = int(round(left + c * (right - left) / cols)), int(round(left + (c + 1) * (right - left) / cols))
        pixels[y0:y1, x0:x1] = fill
    return Image.fromarray(pixels)


def deletion_curve(models: RunModels, image_item: ImageItem, text_item: TextItem, explanation: SideExplanation,
                   side: str, *, fractions: tuple[float, ...] = FRACTIONS, n_random: int = N_RANDOM,
                   seed: int = 0) -> DeletionCurve:
    """Delete ``fractions`` of one side's units in relevance order and in ``n_random`` random orders, re-score."""
    fractions_array = np.asarray(fractions, dtype=np.float64)
    if side == "image":
        relevance = np.asarray(explanation.relevance, dtype=np.float64)
        image = models.load_image(image_item) if isinstance(image_item, str) else models.as_decoded(image_item.image)
        like = image_item if isinstance(image_item, str) else image_item.like
        n_units = relevance.size
        variants = [NewImage(mask_cells(image, relevance.shape, order[:k], explanation.box), like=like)
                    for order in _orders(relevance, n_random, seed) for k in _counts(n_units, fractions_array)]
        scores = models.score(variants, [text_item] * len(variants))
    elif side == "text":
        spans = list(explanation.spans or [])
        relevance = np.array([value for _, value in explanation.tokens or []], dtype=np.float64)
        if isinstance(text_item, str):
            text, language = models.text(text_item), models.text_language(text_item)
        else:
            text, language = text_item.text, text_item.language
        n_units = len(spans)
        variants = [NewText(delete_spans(text, [spans[i] for i in order[:k]]), language)
                    for order in _orders(relevance, n_random, seed) for k in _counts(n_units, fractions_array)]
        scores = models.score([image_item] * len(variants), variants)
    else:
        raise ValueError(f"Unknown side {side!r}; allowed: ['image', 'text']")
    curves = np.asarray(scores, dtype=np.float64).reshape(n_random + 1, len(fractions_array))
    return DeletionCurve(side, explanation.method, fractions_array, curves[0], curves[1:].mean(0), n_units)
