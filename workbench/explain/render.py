"""Pictures of an explanation: the relevance heatmap over the photo and the words highlighted by attribution.

Signed maps (positive raises the score, negative lowers it) use a diverging palette centred on zero; non-negative
maps (Grad-CAM, attention) a sequential one. Matplotlib runs on the Agg canvas of one figure, with its font settings
in a local context (nothing global changes); CJK titles need a CJK font (Noto Sans CJK), found when installed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from workbench.explain.base import Explanation, explain_pair
from workbench.run.restore import RunModels

FONTS = ["Noto Sans CJK SC", "Noto Sans CJK JP", "DejaVu Sans"]  # first found wins per glyph (fallback)


@dataclass
class DisplayExplanation:
    """What a page or report shows: the overlay PNG, the words with attributions, the method and why a side is
    missing."""

    png: bytes
    tokens: list[tuple[str, float]]
    method: str
    score: float
    reasons: dict[str, str]


def _palette(values: np.ndarray) -> tuple[str, float, float]:
    peak = float(np.abs(values).max()) if values.size else 0.0
    peak = peak or 1.0
    if (values < 0).any():
        return "RdBu_r", -peak, peak
    return "inferno", 0.0, peak


def overlay_png(explanation: Explanation, image: Image.Image, text: str, *, dpi: int = 110) -> bytes:
    """The photo with the relevance grid over the part the encoder sees, and the text's words coloured by
    attribution (red raises the score, blue lowers it); PNG bytes."""
    from matplotlib import colormaps, colors, rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with rc_context({"font.family": FONTS, "font.size": 9}):
        figure = Figure(figsize=(5.2, 6.4), dpi=dpi)
        renderer = FigureCanvasAgg(figure).get_renderer()
        photo = figure.add_axes((0.05, 0.34, 0.9, 0.58))
        photo.imshow(image, extent=(0, 1, 1, 0))
        if explanation.image is not None and explanation.image.relevance is not None:
            grid = np.asarray(explanation.image.relevance, dtype=np.float64)
            left, top, right, bottom = explanation.image.box
            cmap, low, high = _palette(grid)
            photo.imshow(grid, extent=(left, right, bottom, top), cmap=cmap, vmin=low, vmax=high, alpha=0.5,
                         interpolation="bilinear")
        photo.set_xlim(0, 1)
        photo.set_ylim(1, 0)
        photo.set_axis_off()
        image_method = explanation.image.method if explanation.image else "not explained"
        photo.set_title(f"score {explanation.score:.3f} · image: {image_method}", fontsize=9)

        words = figure.add_axes((0.05, 0.02, 0.9, 0.28))
        words.set_axis_off()
        if explanation.text is not None:
            values = np.array([v for _, v in explanation.text.tokens], dtype=np.float64)
            peak = float(np.abs(values).max()) if values.size and np.abs(values).max() > 0 else 1.0
            norm, cmap = colors.Normalize(-peak, peak), colormaps["RdBu_r"]
            words.text(0, 1.0, f"text: {explanation.text.method}", fontsize=8, va="top", color="#555555")
            x, y = 0.0, 0.82
            to_axes = words.transAxes.inverted()
            for word, value in explanation.text.tokens:
                ink = "white" if abs(value) > 0.6 * peak else "black"  # legible on the darkest colours
                label = words.text(x, y, word, va="top", fontsize=10, color=ink,
                                   bbox={"facecolor": cmap(norm(value)), "edgecolor": "none", "pad": 1.5})
                extent = label.get_window_extent(renderer).transformed(to_axes)
                if extent.x1 > 1.0 and x > 0:  # wrap: move the word to the next line
                    x, y = 0.0, y - 0.17
                    label.set_position((x, y))
                    extent = label.get_window_extent(renderer).transformed(to_axes)
                x = extent.x1 + 0.02
        else:
            words.text(0, 0.9, text, va="top", fontsize=10, wrap=True)
            words.text(0, 0.55, "text not explained: " + explanation.reasons.get("text", ""), va="top", fontsize=7,
                       color="#777777", wrap=True)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def display_explanation(models: RunModels, pair_id: str, *, image_method: str | None = None,
                        text_method: str | None = None) -> DisplayExplanation:
    """Explain one pair of a restored run and render it: what the detail view and Mismatches cards show."""
    explanation = explain_pair(models, pair_id, image_method=image_method, text_method=text_method)
    pair = models.pair(pair_id)
    png = overlay_png(explanation, models.load_image(pair["image_id"]), models.text(pair["text_id"]))
    tokens = explanation.text.tokens if explanation.text is not None else []
    return DisplayExplanation(png, tokens, explanation.method, explanation.score, dict(explanation.reasons))


def write_overlay(explanation: Explanation, image: Image.Image, text: str, path: str | Path) -> Path:
    """Write the overlay PNG to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(overlay_png(explanation, image, text))
    return path
