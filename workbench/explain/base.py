"""The explanation contract: what an explainer returns, the pair it explains, and the one registry of explainers.

An explainer explains one side of a pair's score (the photo or the text) for one kind of tower or head: it is
registered with the encoder or head classes it applies to (subclasses included), and :func:`explain_pair` picks,
per side, the first registered explainer that applies to the run's models. A side no explainer can handle gets a
reason instead (listing what the registered explainers cover), never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from workbench.models.fusion import FusionData, PairTensors
from workbench.run.restore import ImageItem, NewImage, NewText, RunModels, TextItem

SIDES = ("image", "text")
FULL_BOX = (0.0, 0.0, 1.0, 1.0)


class ExplanationUnavailable(Exception):
    """This explainer cannot explain this pair (e.g. a transformer without attention maps); the message says why."""


@dataclass
class SideExplanation:
    """One side's explanation.

    Image: ``relevance`` is a (rows, cols) grid over ``box`` (left, top, right, bottom as fractions of the photo:
    the part the encoder sees), signed where the method is (positive raises the score). Text: ``tokens`` are
    ``(word, attribution)`` in text order and ``spans`` their character spans in the text.
    """

    method: str
    citation: str = ""
    relevance: np.ndarray | None = None
    box: tuple[float, float, float, float] = FULL_BOX
    tokens: list[tuple[str, float]] | None = None
    spans: list[tuple[int, int]] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Explanation:
    """Why a pair got its score: the image side, the text side, and the reason for a side left unexplained."""

    run_id: str
    pair_id: str | None
    score: float
    image: SideExplanation | None
    text: SideExplanation | None
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """The methods used, e.g. "grad_cam + integrated_gradients" ("none" when neither side could be explained)."""
        used = [side.method for side in (self.image, self.text) if side is not None]
        return " + ".join(used) if used else "none"

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON object: score, image_relevance (a 2-D list over the image grid; [] when unexplained),
        text_tokens ([token, attribution] pairs), method, plus per side ("image", "text") its method, citation and
        details (the image's grid box), and the reasons for a side left unexplained."""
        relevance = [] if self.image is None else np.asarray(self.image.relevance, dtype=float).round(6).tolist()
        tokens = [] if self.text is None else [[word, round(float(value), 6)] for word, value in self.text.tokens]
        sides = {name: None if side is None else {"method": side.method, "citation": side.citation,
                                                  **({"box": list(side.box)} if name == "image" else {}),
                                                  "details": side.details}
                 for name, side in (("image", self.image), ("text", self.text))}
        return {"run_id": self.run_id, "pair_id": self.pair_id, "score": float(self.score),
                "image_relevance": relevance, "text_tokens": tokens, "method": self.method,
                "image": sides["image"], "text": sides["text"], "reasons": dict(self.reasons)}


@dataclass
class PairContext:
    """One (image, text) pair of a restored run, with what every explainer needs."""

    models: RunModels
    image_item: ImageItem
    text_item: TextItem
    data: FusionData  # row 0 on each side is this pair's image and text
    image: Image.Image  # the photo as the run decoded it
    text: str
    language: str | None

    @classmethod
    def of(cls, models: RunModels, image_item: ImageItem, text_item: TextItem) -> PairContext:
        data = models.fusion_data_for([image_item], [text_item])
        if isinstance(image_item, NewImage):
            image = models.as_decoded(image_item.image)
        else:
            image = models.load_image(image_item)
        if isinstance(text_item, NewText):
            text, language = text_item.text, text_item.language
        else:
            text, language = models.text(text_item), models.text_language(text_item)
        return cls(models, image_item, text_item, data, image, text, language)

    @property
    def device(self) -> torch.device:
        return self.models.device

    def score(self) -> float:
        """The head's score of this pair (as stored for eval-set pairs)."""
        return float(self.models.head.score_pairs(self.data, np.array([0]), np.array([0]))[0])

    def score_tensors(self, **given: torch.Tensor | None) -> torch.Tensor:
        """The head's differentiable score with some `PairTensors` fields given (e.g. ``image_vecs`` from the
        encoder with autograd on) and the others fixed to this pair's cached inputs, repeated to the batch size."""
        fixed = PairTensors.from_fusion_data(self.data, np.array([0]), np.array([0]), self.device)
        batch = max((t.shape[0] for t in given.values() if t is not None), default=1)
        fields = {}
        for name in fixed.__dataclass_fields__:
            if name in given:
                fields[name] = given[name]
            else:
                value = getattr(fixed, name)
                fields[name] = None if value is None else value.expand(batch, *value.shape[1:])
        return self.models.head.score_tensors(PairTensors(**fields))

    def score_vectors(self, side: str, vectors: np.ndarray) -> np.ndarray:
        """The head's scores with this pair's ``side`` vector replaced by each row of ``vectors`` (the other side,
        tags and categories kept): scoring only, so any head serves. Not for token heads."""
        n, d = len(vectors), self.data
        if side == "image":
            data = FusionData(np.asarray(vectors, np.float32), d.text_vecs, None, None, d.text_tokens, d.text_mask,
                              np.repeat(d.image_tags, n, 0), d.text_tags, np.repeat(d.image_product, n),
                              d.text_product, np.repeat(d.image_category, n))
            return self.models.head.score_pairs(data, np.arange(n), np.zeros(n, dtype=np.int64))
        data = FusionData(d.image_vecs, np.asarray(vectors, np.float32), d.image_tokens, d.image_mask, None, None,
                          d.image_tags, np.repeat(d.text_tags, n, 0), d.image_product, np.repeat(d.text_product, n),
                          d.image_category)
        return self.models.head.score_pairs(data, np.zeros(n, dtype=np.int64), np.arange(n))

    def leave_one_out(self, side: str, features: np.ndarray) -> np.ndarray:
        """Each feature's contribution: the score minus the score with that feature zeroed (zero features: 0)."""
        features = np.asarray(features, dtype=np.float32)
        active = np.flatnonzero(features)
        variants = np.repeat(features[None], len(active) + 1, axis=0)
        variants[np.arange(1, len(active) + 1), active] = 0.0
        scores = self.score_vectors(side, variants).astype(np.float64)
        contribution = np.zeros(len(features))
        contribution[active] = scores[0] - scores[1:]
        return contribution


Explain = Callable[[PairContext], SideExplanation]


@dataclass(frozen=True)
class Explainer:
    """Every registry fact about one explanation method."""

    name: str
    side: str  # "image" or "text"
    applies_to: tuple[type, ...]  # encoder classes (for the side's encoder) or fusion-head classes
    kind: str  # "encoder" or "head": which of the run's models `applies_to` is matched against
    description: str
    citation: str
    explain: Explain

    def covers(self) -> str:
        return f"{self.name} ({', '.join(sorted(getattr(c, 'name', c.__name__) for c in self.applies_to))})"


_REGISTRY: dict[str, Explainer] = {}


def register_explainer(explainer: Explainer) -> Explainer:
    """Add an explainer; names are unique, sides are "image" or "text", kinds "encoder" or "head"."""
    if explainer.side not in SIDES:
        raise ValueError(f"Explainer '{explainer.name}' has side {explainer.side!r}; allowed: {list(SIDES)}")
    if explainer.kind not in ("encoder", "head"):
        raise ValueError(f"Explainer '{explainer.name}' has kind {explainer.kind!r}; allowed: ['encoder', 'head']")
    previous = _REGISTRY.get(explainer.name)
    if previous is not None and previous.explain is not explainer.explain:
        raise ValueError(f"Explainer name '{explainer.name}' is already registered")
    _REGISTRY[explainer.name] = explainer
    return explainer


def list_explainers(side: str | None = None) -> list[str]:
    """Registered explainer names (registry order: the preferred first), optionally of one side."""
    if side is not None and side not in SIDES:
        raise ValueError(f"Unknown side {side!r}; allowed: {list(SIDES)}")
    return [name for name, e in _REGISTRY.items() if side is None or e.side == side]


def get_explainer(name: str) -> Explainer:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"Explainer '{name}' not found. Available: {list_explainers()}") from None


def _target(models: RunModels, explainer: Explainer) -> object:
    if explainer.kind == "head":
        return models.head
    return models.image_encoder if explainer.side == "image" else models.text_encoder


def applicable(models: RunModels, side: str) -> list[Explainer]:
    """The explainers of ``side`` that apply to this run's encoder or head, preferred first."""
    return [e for e in _REGISTRY.values() if e.side == side and isinstance(_target(models, e), e.applies_to)]


def _no_method_reason(models: RunModels, side: str) -> str:
    encoder = models.image_encoder if side == "image" else models.text_encoder
    covered = "; ".join(e.covers() for e in _REGISTRY.values() if e.side == side)
    return (f"No {side} explainer applies to encoder '{encoder.name}' with head '{models.head.name}'. "
            f"Registered {side} explainers: {covered}.")


def explain_side(context: PairContext, side: str, method: str | None = None) -> tuple[SideExplanation | None, str]:
    """One side's explanation by ``method`` (default: the first applicable one that succeeds), or None and why."""
    models = context.models
    if method is not None:
        chosen = get_explainer(method)
        if chosen.side != side:
            raise ValueError(f"Explainer '{method}' explains the {chosen.side}; {side} explainers: "
                             f"{list_explainers(side)}")
        if chosen not in applicable(models, side):
            return None, (f"{method} does not apply to this run ({_no_method_reason(models, side)}) "
                          f"Applicable here: {[e.name for e in applicable(models, side)]}")
        candidates = [chosen]
    else:
        candidates = applicable(models, side)
    if not candidates:
        return None, _no_method_reason(models, side)
    reasons = []
    for explainer in candidates:
        try:
            return explainer.explain(context), ""
        except ExplanationUnavailable as exc:
            reasons.append(f"{explainer.name}: {exc}")
        except NotImplementedError as exc:  # e.g. a head without a differentiable scoring path
            reasons.append(f"{explainer.name}: {exc}")
        except Exception as exc:  # an explanation never takes the caller down; the reason carries the error
            reasons.append(f"{explainer.name} failed: {type(exc).__name__}: {exc}")
    return None, "; ".join(reasons)


def explain_items(models: RunModels, image_item: ImageItem, text_item: TextItem, *, pair_id: str | None = None,
                  image_method: str | None = None, text_method: str | None = None) -> Explanation:
    """Explain the score of any (image, text) pair of a restored run: eval-set ids or new content."""
    context = PairContext.of(models, image_item, text_item)
    image, image_reason = explain_side(context, "image", image_method)
    text, text_reason = explain_side(context, "text", text_method)
    reasons = {side: why for side, why in (("image", image_reason), ("text", text_reason)) if why}
    return Explanation(models.run_id, pair_id, context.score(), image, text, reasons)


def explain_pair(models: RunModels, pair_id: str, *, image_method: str | None = None,
                 text_method: str | None = None) -> Explanation:
    """Explain the stored score of one eval-set pair of a restored run (see :func:`explain_items`)."""
    pair = models.pair(pair_id)
    return explain_items(models, pair["image_id"], pair["text_id"], pair_id=pair_id, image_method=image_method,
                         text_method=text_method)


def cell_grid(values: np.ndarray) -> np.ndarray:
    """Per-token image values → a square grid; a leading class token (n = k² + 1) is dropped."""
    values = np.asarray(values, dtype=np.float64).ravel()
    for skip in (0, 1):
        side = int(round(np.sqrt(len(values) - skip)))
        if side > 0 and side * side == len(values) - skip:
            return values[skip:].reshape(side, side)
    raise ExplanationUnavailable(f"{len(values)} image tokens do not form a square grid of patches")


def mean_fill(image: Image.Image) -> Image.Image:
    """An image of the same size filled with the photo's mean colour: what deleted regions become."""
    mean = np.asarray(image.convert("RGB")).reshape(-1, 3).mean(0).round().astype(int)
    return Image.new("RGB", image.size, tuple(int(v) for v in mean))


def block_sum(pixels: np.ndarray, grid: int) -> np.ndarray:
    """Sum a (H, W) pixel map into a (grid, grid) map (H and W divisible by grid)."""
    h, w = pixels.shape
    return pixels.reshape(grid, h // grid, grid, w // grid).sum(axis=(1, 3))
