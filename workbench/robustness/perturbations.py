"""The one registry of perturbations: name, modality, function, description.

:func:`perturb` is deterministic: its random draws come from a generator seeded by (seed, perturbation name, the
item's content), never by the severity or by the order items are processed in, so the same seed gives the same
bytes or text on any machine and severity s+1 extends severity s (see :mod:`.images` and :mod:`.texts`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from workbench.data.vocab import CatalogueVocabulary

from . import images, texts

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
MODALITIES = ("image", "text", "both")  # "both": applied to the image and to the text of every pair

Item = Image.Image | str


@dataclass(frozen=True)
class Perturbation:
    """A perturbation of one modality; ``fn(item, severity, rng[, vocabulary])`` returns the perturbed item."""

    name: str
    modality: str
    fn: Callable[..., Item]
    description: str


def _identity(item: Item, severity: int, rng: np.random.Generator, vocabulary: CatalogueVocabulary | None = None,
              ) -> Item:
    return item.copy() if isinstance(item, Image.Image) else item


_PERTURBATIONS: tuple[Perturbation, ...] = (
    Perturbation("identity", "both", _identity,
                 "No change: re-encodes the clean items under their own cache keys, so its metrics must equal the "
                 "clean run's."),
    Perturbation("gaussian_blur", "image", images.gaussian_blur,
                 "Gaussian blur, radius 0.5–4 % of the short side."),
    Perturbation("jpeg", "image", images.jpeg, "JPEG recompression at quality 40, 25, 15, 10, 5."),
    Perturbation("gaussian_noise", "image", images.gaussian_noise,
                 "Additive Gaussian noise, sigma 3–22 % of the pixel range."),
    Perturbation("brightness_contrast", "image", images.brightness_contrast,
                 "Under- or over-exposure: pixels pulled 15–75 % of the way to a dark or light grey."),
    Perturbation("crop_zoom", "image", images.crop_zoom,
                 "Off-centre crop keeping 90–50 % of each side, zoomed back to full size."),
    Perturbation("rotation", "image", images.rotation, "Rotation by 5–45 degrees, corners in the border colour."),
    Perturbation("color_shift", "image", images.color_shift, "Hue rotated by 10–70 degrees."),
    Perturbation("keyboard_typo", "text", texts.keyboard_typo,
                 "QWERTY-neighbour typos in 3–20 % of the Latin letters."),
    Perturbation("char_drop_swap", "text", texts.char_drop_swap,
                 "3–20 % of the characters dropped or swapped with the next one."),
    Perturbation("case_punct", "text", texts.case_punct,
                 "10–70 % of words re-cased, punctuation removed or separators inserted."),
    Perturbation("word_order", "text", texts.word_order,
                 "20–100 % of the words (jieba words in Chinese) change places."),
    Perturbation("drop_attribute", "text", texts.drop_attribute,
                 "Attribute words of the eval set left out: one at severity 1, all at severity 5."),
    Perturbation("mixed_language", "text", texts.mixed_language,
                 "Attribute words in the other language (红色 -> red), one at severity 1, all at severity 5."),
    Perturbation("unit_variants", "text", texts.unit_variants,
                 "Numbers with units rewritten, one more way per severity: spelling (128GB -> 128G), conversion "
                 "(1.5L -> 1500ml), spacing, language (ml -> 毫升), full-width digits."),
)
_REGISTRY: dict[str, Perturbation] = {p.name: p for p in _PERTURBATIONS}
SUITES: dict[str, tuple[str, ...]] = {
    modality: tuple(p.name for p in _PERTURBATIONS if p.modality == modality) for modality in ("image", "text")
}


def list_perturbations(modality: str | None = None) -> list[Perturbation]:
    """Every registered perturbation, or those of one modality ("image", "text", "both")."""
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality={modality!r} is not supported; allowed: {list(MODALITIES)}")
    return [p for p in _REGISTRY.values() if modality is None or p.modality == modality]


def get_perturbation(name: str) -> Perturbation:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"Perturbation {name!r} not found. Available: {list(_REGISTRY)}") from None


def resolve_suite(suite: str | list[str] | tuple[str, ...]) -> list[str]:
    """Perturbation names from a comma-separated list of suites ("image", "text") and perturbation names."""
    parts = [p.strip() for p in (suite.split(",") if isinstance(suite, str) else suite) if p.strip()]
    if not parts:
        raise ValueError(f"Empty suite; give suites {list(SUITES)} and/or perturbation names {list(_REGISTRY)}.")
    names: list[str] = []
    for part in parts:
        if part not in SUITES and part not in _REGISTRY:
            raise KeyError(f"{part!r} is neither a suite nor a perturbation. Suites: {list(SUITES)}; "
                           f"perturbations: {list(_REGISTRY)}")
        names += [n for n in SUITES.get(part, (part,)) if n not in names]
    return names


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer) or int(severity) not in SEVERITIES:
        raise ValueError(f"severity={severity!r} is not supported; allowed: {list(SEVERITIES)}")
    return int(severity)


def _content_digest(item: Item) -> bytes:
    if isinstance(item, Image.Image):
        rgb = item.convert("RGB")
        return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).digest()
    return hashlib.sha256(item.encode()).digest()


def item_rng(seed: int, name: str, item: Item) -> np.random.Generator:
    """The generator of one (seed, perturbation, item): the same on every machine, independent of the severity."""
    digest = hashlib.sha256(f"{int(seed)}|{name}|".encode() + _content_digest(item)).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def perturb(name: str, item: Item, *, severity: int, seed: int = 0,
            vocabulary: CatalogueVocabulary | None = None) -> Item:
    """Apply perturbation ``name`` at ``severity`` (1..5) to a PIL image or a text.

    Text perturbations work by word and need the eval set's vocabulary
    (:func:`workbench.data.vocab.catalogue_vocabulary`): its jieba dictionary and attribute values.
    """
    spec = get_perturbation(name)
    severity = check_severity(severity)
    is_image = isinstance(item, Image.Image)
    if not is_image and not isinstance(item, str):
        raise TypeError(f"perturb expects a PIL image or a str, got {type(item).__name__}")
    if spec.modality != "both" and (spec.modality == "image") != is_image:
        raise ValueError(f"{name!r} perturbs {spec.modality}s, got a {'image' if is_image else 'text'}")
    rng = item_rng(seed, name, item)
    if is_image:
        return spec.fn(item, severity, rng)
    if vocabulary is None and spec.modality == "text":
        raise ValueError(f"{name!r} needs the eval set's vocabulary: perturb(..., vocabulary="
                         "workbench.data.vocab.catalogue_vocabulary(data))")
    return spec.fn(item, severity, rng, vocabulary)
