"""Deterministic synthetic product catalogue: rendered product images and bilingual titles.

Each product (category, colour, material, pattern, brand) gets 2-3 rendered views and 2-3 titles in English
and Chinese. Randomness comes from generators seeded by (seed, product index[, view]), so a catalogue of n
products is a prefix of every larger one with the same seed, and the same seed gives byte-identical files. The
recipe is documented in eval_sets/README.md.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from workbench.data.model import ATTRIBUTE_COLUMNS, IMAGE_COLUMNS, PRODUCT_COLUMNS, TEXT_COLUMNS
from workbench.data.vocab import ATTRIBUTES, CATEGORIES, find_attributes

# Rendered RGB of every vocabulary colour; each product jitters it slightly.
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35),
    "orange": (240, 130, 20),
    "yellow": (245, 210, 40),
    "green": (40, 150, 60),
    "blue": (40, 110, 220),
    "navy": (25, 35, 95),
    "teal": (0, 140, 140),
    "purple": (120, 50, 160),
    "pink": (240, 140, 180),
    "brown": (120, 75, 40),
    "beige": (220, 200, 160),
    "black": (30, 30, 32),
    "white": (240, 240, 238),
    "grey": (128, 128, 130),
}

# English name -> Chinese name. Neither contains a vocabulary word (tested).
BRANDS: dict[str, str] = {
    "Lumio": "露米奥", "Nordvik": "诺德维", "Kestrel": "凯斯卓", "Vanta": "梵塔", "Orilla": "奥瑞拉",
    "Tessa": "泰莎", "Brio": "布里奥", "Quill": "奎尔", "Solenne": "索兰", "Marrow": "玛罗",
    "Zephyra": "泽菲拉", "Halden": "哈尔登", "Corvo": "科沃", "Ivelle": "艾维尔", "Tandem": "坦登",
    "Ashby": "阿什比", "Mirelle": "蜜瑞尔", "Juno": "朱诺", "Fennick": "芬尼克", "Selva": "塞尔瓦",
}  # fmt: skip

# Plausible materials per category (repeats weight the draw).
CATEGORY_MATERIALS: dict[str, tuple[str, ...]] = {
    "tshirt": ("cotton", "cotton", "cotton", "wool", "denim"),
    "mug": ("ceramic", "ceramic", "glass", "metal", "plastic"),
    "sneaker": ("canvas", "leather", "leather", "denim", "wool"),
    "handbag": ("leather", "leather", "canvas", "denim", "plastic"),
    "phone": ("plastic", "metal", "glass"),
    "watch": ("metal", "leather", "plastic", "wood", "ceramic"),
    "lamp": ("metal", "wood", "ceramic", "glass", "plastic"),
    "backpack": ("canvas", "canvas", "leather", "denim", "plastic"),
    "bottle": ("metal", "metal", "glass", "plastic"),
    "chair": ("wood", "wood", "metal", "plastic", "leather"),
    "hat": ("cotton", "wool", "canvas", "denim", "leather"),
    "umbrella": ("canvas", "cotton", "plastic"),
}

PATTERN_WEIGHTS: dict[str, float] = {
    "solid": 0.3, "striped": 0.14, "dotted": 0.14, "checked": 0.14, "gradient": 0.14, "floral": 0.14,
}  # fmt: skip

EXTRAS: dict[str, dict[str, tuple[str, ...]]] = {
    "tshirt": {
        "en": ("size S", "size M", "size L", "size XL", "unisex", "short sleeve", "slim fit"),
        "zh": ("S码", "M码", "L码", "XL码", "男女同款", "夏季", "宽松版"),
    },
    "mug": {
        "en": ("350 ml", "12 oz", "dishwasher safe", "gift idea"),
        "zh": ("350毫升", "办公室", "情侣款", "送礼"),
    },
    "sneaker": {
        "en": ("size 39", "size 42", "size 44", "lightweight", "lace-up", "for men", "for women"),
        "zh": ("39码", "42码", "44码", "轻便透气", "男款", "女款"),
    },
    "handbag": {"en": ("for women", "large capacity", "with zip"), "zh": ("女款", "大容量", "通勤")},
    "phone": {"en": ("128 GB", "256 GB", "dual SIM", "6.1 inch"), "zh": ("128GB", "256GB", "双卡双待", "5G")},
    "watch": {"en": ("waterproof", "40 mm", "for men", "quartz"), "zh": ("防水", "男款", "石英", "40毫米")},
    "lamp": {
        "en": ("LED", "dimmable", "USB powered", "for bedroom"),
        "zh": ("LED", "护眼", "卧室", "可调光"),
    },
    "backpack": {
        "en": ("20 L", "laptop compartment", "waterproof", "for school"),
        "zh": ("大容量", "学生", "防泼水", "20升"),
    },
    "bottle": {
        "en": ("500 ml", "750 ml", "leak-proof", "BPA free"),
        "zh": ("500毫升", "750毫升", "便携", "大容量"),
    },
    "chair": {"en": ("for home office", "ergonomic", "stackable"), "zh": ("家用", "人体工学", "可叠放")},
    "hat": {"en": ("one size", "adjustable", "for summer"), "zh": ("均码", "可调节", "夏季", "防晒")},
    "umbrella": {"en": ("windproof", "compact", "automatic"), "zh": ("防风", "晴雨两用", "自动")},
}

# Slots: brand, color, material, pattern, category, extra. Every template names the colour and the category.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "{brand} {color} {material} {pattern} {category}, {extra}",
        "{color} {pattern} {material} {category} by {brand}",
        "{brand} {category} - {color} / {material} / {pattern}",
        "{extra} {color} {category} in {material} | {brand}",
        "{brand} {pattern} {category}, {color}, {extra}",
        "{brand} {material} {category} ({color}, {pattern})",
    ),
    "zh": (
        "{brand} {color} {material} {pattern} {category} {extra}",
        "{brand}{color}{pattern}{material}{category} {extra}",
        "【{brand}】{extra} {color}{category} {material}",
        "{extra}{material}{category} {color} {pattern}款 {brand}",
        "{brand} {pattern}{category} {color} {extra}",
    ),
}

TYPO_RATE = 0.05
JPEG_RATE = 1 / 3
OCCLUSION_RATE = 0.15
_SUPERSAMPLE = 2
_CHUNK = 25  # products per work unit and progress step
_PARALLEL_FROM = 100  # products; smaller catalogues render in the calling thread


@dataclass(frozen=True)
class CatalogParts:
    """The generated catalogue as eval-set frames (docs/ARCHITECTURE.md layout); no pairs."""

    products: pd.DataFrame
    attributes: pd.DataFrame
    images: pd.DataFrame
    texts: pd.DataFrame


@dataclass(frozen=True)
class _Product:
    product_id: str
    category: str
    color: str
    material: str
    pattern: str
    brand: str
    rgb: np.ndarray  # (3,) float32, jittered main colour
    accent: np.ndarray  # (3,) float32, pattern colour
    period: float  # pattern period in object units
    vertical: bool  # stripe direction
    flowers: np.ndarray  # (K, 3) x, y, radius of floral motifs in object units


@dataclass(frozen=True)
class _Part:
    """One piece of a silhouette in object units (y down, about [-1, 1]); ``width`` > 0 draws a polyline."""

    role: str  # "main" (coloured, patterned) or a key of _detail_colors
    points: np.ndarray
    cut: bool = False
    width: float = 0.0


_Rows = tuple[list[tuple], list[tuple], list[tuple], list[tuple]]  # products, attributes, images, texts


def generate_catalog(
    out_dir: Path,
    *,
    n_products: int = 2000,
    seed: int = 0,
    image_size: int = 128,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> CatalogParts:
    """Render the synthetic catalogue's images into ``out_dir`` and return its frames.

    Image files are ``out_dir / f"{image_id}.png"`` (or ``.jpg``); IDs are "p00001", "p00001-i1", "p00001-t1".
    ``progress(done, total)`` is called every few products and at the end. ``workers`` threads render in
    parallel (None: one per available core, up to 8, for large catalogues); the output does not depend on it.
    """
    if n_products < 1:
        raise ValueError(f"n_products must be >= 1, got {n_products}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1 or None, got {workers}")
    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = 1 if n_products < _PARALLEL_FROM else min(cores, 8)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    chunks = [(start, min(start + _CHUNK, n_products)) for start in range(0, n_products, _CHUNK)]
    jobs = [(start, stop, seed, image_size, out_dir) for start, stop in chunks]
    rows: _Rows = ([], [], [], [])
    # Threads, not processes: numpy and Pillow release the GIL for the heavy per-pixel work, and threads need
    # no re-import of the caller's main module. Seeds are per product, so the output is the same for any count.
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        results = pool.map(_generate_chunk, jobs) if pool is not None else map(_generate_chunk, jobs)
        for (_, stop), chunk_rows in zip(chunks, results, strict=True):
            for table, new in zip(rows, chunk_rows, strict=True):
                table.extend(new)
            if progress is not None:
                progress(stop, n_products)
    products, attributes, images, texts = rows
    return CatalogParts(
        products=pd.DataFrame(products, columns=list(PRODUCT_COLUMNS)),
        attributes=pd.DataFrame(attributes, columns=list(ATTRIBUTE_COLUMNS)),
        images=pd.DataFrame(images, columns=list(IMAGE_COLUMNS)),
        texts=pd.DataFrame(texts, columns=list(TEXT_COLUMNS)),
    )


def _generate_chunk(job: tuple[int, int, int, int, Path]) -> _Rows:
    """Products ``start..stop-1``: write their images, return (products, attributes, images, texts) rows."""
    start, stop, seed, image_size, out_dir = job
    products, attributes, images, texts = [], [], [], []
    for index in range(start, stop):
        product = _make_product(index, seed)
        pid = product.product_id
        products.append((pid, product.category))
        attributes += [(pid, name, getattr(product, name)) for name in ("color", "material", "pattern", "brand")]
        rng = np.random.default_rng([seed, 0, index])
        for t, (text, language) in enumerate(_make_titles(product, rng), start=1):
            texts.append((f"{pid}-t{t}", pid, text, language, hashlib.sha256(text.encode("utf-8")).hexdigest()))
        for view in range(2 + int(rng.random() < 0.5)):
            image_id = f"{pid}-i{view + 1}"
            view_rng = np.random.default_rng([seed, 1, index, view])
            data, ext = _encode(_render(product, view, view_rng, image_size), view_rng)
            path = out_dir / f"{image_id}.{ext}"
            path.write_bytes(data)
            images.append((image_id, pid, str(path), hashlib.sha256(data).hexdigest(), image_size, image_size))
    return products, attributes, images, texts


# --- products and titles ------------------------------------------------------------------------------------


def _make_product(index: int, seed: int) -> _Product:
    # Categories are dealt in shuffled blocks of 12 so every category appears early and equally often.
    block = np.random.default_rng([seed, 2, index // len(CATEGORIES)]).permutation(len(CATEGORIES))
    category = CATEGORIES[block[index % len(CATEGORIES)]]
    rng = np.random.default_rng([seed, 3, index])
    color = str(rng.choice(list(COLOR_RGB)))
    material = str(rng.choice(CATEGORY_MATERIALS[category]))
    pattern = str(rng.choice(list(PATTERN_WEIGHTS), p=list(PATTERN_WEIGHTS.values())))
    rgb = np.clip(np.array(COLOR_RGB[color], np.float32) + rng.normal(0, 6, 3), 0, 255).astype(np.float32)
    luma = float(rgb @ np.array([0.299, 0.587, 0.114], np.float32))
    if luma < 140:
        accent = np.array([235, 233, 225], np.float32)
    else:
        accent = np.array([35, 35, 40], np.float32) if rng.random() < 0.5 else rgb * 0.45
    n_flowers = int(rng.integers(10, 16))
    flowers = np.column_stack(
        [rng.uniform(-1, 1, n_flowers), rng.uniform(-1, 1, n_flowers), rng.uniform(0.1, 0.16, n_flowers)]
    ).astype(np.float32)
    return _Product(
        product_id=f"p{index + 1:05d}",
        category=category,
        color=color,
        material=material,
        pattern=pattern,
        brand=str(rng.choice(list(BRANDS))),
        rgb=rgb,
        accent=accent.astype(np.float32),
        period=float(rng.uniform(0.2, 0.32)),
        vertical=bool(rng.random() < 0.4),
        flowers=flowers,
    )


def _surface(attribute: str, value: str, language: str, rng: np.random.Generator) -> str:
    """A synonym, the first (most common) form half of the time."""
    forms = ATTRIBUTES[attribute][value][language]
    return forms[0] if rng.random() < 0.5 else forms[int(rng.integers(len(forms)))]


def _make_titles(product: _Product, rng: np.random.Generator) -> list[tuple[str, str]]:
    n_titles = 2 + int(rng.random() < 0.5)
    first = "en" if rng.random() < 0.5 else "zh"
    second = "zh" if first == "en" else "en"
    languages = [first, second] + (["en" if rng.random() < 0.5 else "zh"] if n_titles == 3 else [])
    order = {lang: list(rng.permutation(len(TEMPLATES[lang]))) for lang in TEMPLATES}
    titles = []
    for language in languages:
        template = TEMPLATES[language][order[language].pop()]
        brand = product.brand if language == "en" or rng.random() < 0.3 else BRANDS[product.brand]
        slots = {name: _surface(name, getattr(product, name), language, rng) for name in ATTRIBUTES}
        extras = EXTRAS[product.category][language]
        title = template.format(brand=brand, extra=extras[int(rng.integers(len(extras)))], **slots)
        if language == "en":
            title = title[0].upper() + title[1:]
            if rng.random() < TYPO_RATE:
                title = _typo(title, product, rng)
        titles.append((title, language))
    return titles


def _typo(title: str, product: _Product, rng: np.random.Generator) -> str:
    """One swapped, dropped or doubled letter in a word that does not carry the colour or the category."""
    truth = {name: getattr(product, name) for name in ATTRIBUTES}
    words = list(re.finditer(r"[A-Za-z]{5,}", title))
    for w in (words[i] for i in rng.permutation(len(words))):
        word, j, op = w.group(), int(rng.integers(1, len(w.group()) - 1)), int(rng.integers(3))
        if op == 0:
            new = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        elif op == 1:
            new = word[:j] + word[j + 1 :]
        else:
            new = word[:j] + word[j] + word[j:]
        candidate = title[: w.start()] + new + title[w.end() :]
        found = find_attributes(candidate, "en")
        keeps_key = found.get("color") == product.color and found.get("category") == product.category
        if new != word and keeps_key and all(truth[k] == v for k, v in found.items()):
            return candidate
    return title


# --- silhouettes --------------------------------------------------------------------------------------------


def _ellipse(cx: float, cy: float, rx: float, ry: float, a0: float = 0, a1: float = 360, n: int = 32) -> np.ndarray:
    a = np.radians(np.linspace(a0, a1, n))
    return np.column_stack([cx + rx * np.cos(a), cy + ry * np.sin(a)])


def _rect(x0: float, y0: float, x1: float, y1: float, r: float = 0.0) -> np.ndarray:
    if r <= 0:
        return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], float)
    corners = [(x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180), (x1 - r, y0 + r, 270)]
    return np.concatenate([_ellipse(cx, cy, r, r, a, a + 90, 6) for cx, cy, a in corners])


def _pts(*points: tuple[float, float]) -> np.ndarray:
    return np.array(points, float)


def _umbrella() -> list[_Part]:
    tips = np.linspace(0.95, -0.95, 5)
    scallops = [
        _ellipse((a + b) / 2, 0.0, (a - b) / 2, 0.12, 0, -180, 10) for a, b in zip(tips[:-1], tips[1:], strict=True)
    ]
    canopy = np.concatenate([_ellipse(0, 0, 0.95, 0.78, 180, 360, 40), *scallops])
    ribs = [_Part("main_dark", _pts((0, -0.78), (x, 0.0)), width=0.03) for x in tips[1:-1]]
    return [
        _Part("main", canopy),
        *ribs,
        _Part("dark", _pts((0, -0.92), (0, 0.75)), width=0.05),
        _Part("dark", _ellipse(0.13, 0.75, 0.13, 0.12, 180, 0, 12), width=0.05),
    ]


@cache
def _shapes() -> dict[str, list[_Part]]:
    """Category -> silhouette parts, drawn in order (details always over the main colour)."""
    return {
        "tshirt": [
            _Part(
                "main",
                _pts(
                    (-0.25, -0.85),
                    (-0.12, -0.72),
                    (0, -0.69),
                    (0.12, -0.72),
                    (0.25, -0.85),
                    (0.65, -0.75),
                    (1.0, -0.35),
                    (0.75, -0.12),
                    (0.6, -0.28),
                    (0.6, 0.9),
                    (-0.6, 0.9),
                    (-0.6, -0.28),
                    (-0.75, -0.12),
                    (-1.0, -0.35),
                    (-0.65, -0.75),
                ),
            ),
            _Part("main_dark", _ellipse(0, -0.86, 0.25, 0.17, 10, 170, 12), width=0.06),
        ],
        "mug": [
            _Part("main", _ellipse(0.45, 0.05, 0.4, 0.4)),
            _Part("main", _ellipse(0.45, 0.05, 0.22, 0.22), cut=True),
            _Part("main", _rect(-0.65, -0.65, 0.45, 0.8, 0.12)),
            _Part("main_dark", _ellipse(-0.1, -0.65, 0.5, 0.1)),
        ],
        "sneaker": [
            _Part(
                "main",
                _pts(
                    (-0.92, 0.3),
                    (-0.9, -0.3),
                    (-0.78, -0.45),
                    (-0.55, -0.42),
                    (-0.4, -0.25),
                    (-0.2, -0.3),
                    (-0.12, -0.48),
                    (0.02, -0.42),
                    (0.2, -0.28),
                    (0.5, -0.1),
                    (0.8, 0.0),
                    (0.95, 0.15),
                    (0.95, 0.3),
                ),
            ),
            _Part("light", _pts((-0.96, 0.28), (0.92, 0.28), (1.0, 0.36), (0.95, 0.5), (-0.96, 0.5))),
            *[
                _Part("light", _pts((x - 0.06, y - 0.08), (x + 0.06, y + 0.08)), width=0.04)
                for x, y in ((0.0, -0.3), (0.13, -0.22), (0.26, -0.15), (0.39, -0.08))
            ],
            _Part("main_dark", _pts((-0.92, 0.28), (-0.9, -0.3), (-0.78, -0.45), (-0.7, 0.28))),
        ],
        "handbag": [
            _Part("main", _ellipse(0, -0.2, 0.45, 0.6)),
            _Part("main", _ellipse(0, -0.2, 0.34, 0.49), cut=True),
            _Part("main", _pts((-0.7, -0.2), (0.7, -0.2), (0.9, 0.72), (0.82, 0.8), (-0.82, 0.8), (-0.9, 0.72))),
            _Part("main_dark", _pts((-0.7, -0.2), (-0.62, 0.2), (0, 0.32), (0.62, 0.2), (0.7, -0.2)), width=0.05),
            _Part("metal", _rect(-0.08, 0.24, 0.08, 0.4, 0.03)),
        ],
        "phone": [
            _Part("main", _rect(-0.45, -0.92, 0.45, 0.92, 0.15)),
            _Part("dark", _rect(-0.38, -0.84, -0.02, -0.44, 0.08)),
            _Part("metal", _ellipse(-0.27, -0.74, 0.07, 0.07)),
            _Part("metal", _ellipse(-0.27, -0.55, 0.07, 0.07)),
            _Part("light", _ellipse(-0.11, -0.64, 0.04, 0.04)),
            _Part("main_dark", _rect(0.45, -0.5, 0.49, -0.28)),
        ],
        "watch": [
            _Part("main", _rect(-0.24, -1.0, 0.24, -0.3, 0.04)),
            _Part("main", _rect(-0.24, 0.3, 0.24, 1.0, 0.04)),
            _Part("main", _ellipse(0, 0, 0.5, 0.5)),
            _Part("main", _rect(0.45, -0.08, 0.6, 0.08)),
            _Part("light", _ellipse(0, 0, 0.39, 0.39)),
            *[
                _Part("dark", _pts((0.33 * c, 0.33 * s), (0.39 * c, 0.39 * s)), width=0.04)
                for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1))
            ],
            _Part("dark", _pts((0, 0), (0, -0.3)), width=0.04),
            _Part("dark", _pts((0, 0), (0.2, 0.06)), width=0.05),
            *[_Part("main_dark", _ellipse(0, y, 0.04, 0.04, n=10)) for y in (0.6, 0.72, 0.84)],
        ],
        "lamp": [
            _Part("main", _pts((-0.28, -0.92), (0.28, -0.92), (0.68, -0.25), (-0.68, -0.25))),
            _Part("main", _pts((-0.45, 0.74), (0.45, 0.74), (0.55, 0.92), (-0.55, 0.92))),
            _Part("metal", _pts((0, 0.76), (0.3, 0.2), (0, -0.25)), width=0.08),
            _Part("glow", _ellipse(0, -0.25, 0.3, 0.13, 0, 180, 16)),
        ],
        "backpack": [
            _Part("main", _ellipse(0, -0.98, 0.2, 0.13)),
            _Part("main", _ellipse(0, -0.98, 0.11, 0.06), cut=True),
            _Part("main", _ellipse(0, -0.5, 0.62, 0.42)),
            _Part("main", _rect(-0.62, -0.5, 0.62, 0.92, 0.25)),
            _Part("main_dark", _pts((-0.62, -0.3), (-0.7, 0.75)), width=0.08),
            _Part("main_dark", _pts((0.62, -0.3), (0.7, 0.75)), width=0.08),
            _Part("main_dark", _rect(-0.42, 0.15, 0.42, 0.8, 0.12)),
            _Part("dark", _pts((-0.36, 0.22), (0.36, 0.22)), width=0.035),
            _Part("dark", _ellipse(0, -0.45, 0.5, 0.3, 190, 350, 16), width=0.035),
        ],
        "bottle": [
            _Part("main", _pts((-0.2, -0.74), (0.2, -0.74), (0.36, -0.48), (-0.36, -0.48))),
            _Part("main", _rect(-0.36, -0.5, 0.36, 0.92, 0.12)),
            _Part("dark", _rect(-0.22, -0.98, 0.22, -0.72, 0.05)),
            _Part("dark", _ellipse(0, -0.98, 0.1, 0.08, 180, 360, 10), width=0.04),
        ],
        "chair": [
            _Part("main", _rect(-0.48, -0.95, 0.48, -0.12, 0.12)),
            _Part("main", _pts((-0.55, -0.16), (0.55, -0.16), (0.68, 0.1), (-0.68, 0.1))),
            *[
                _Part("main", _pts((x, 0.05), (x, y)), width=w)
                for x, y, w in ((-0.42, 0.72, 0.08), (0.42, 0.72, 0.08), (-0.6, 0.95, 0.1), (0.6, 0.95, 0.1))
            ],
            _Part("main_dark", _pts((-0.66, 0.06), (0.66, 0.06)), width=0.06),
        ],
        "hat": [
            _Part("main", _ellipse(0, 0.25, 0.5, 0.75, 180, 360, 32)),
            _Part("main", _ellipse(0, 0.28, 0.95, 0.2)),
            _Part("main_dark", _rect(-0.48, 0.06, 0.48, 0.22)),
        ],
        "umbrella": _umbrella(),
    }


# --- rendering ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """Placement of the object in one image: centre (pixels), pixels per object unit, rotation, mirroring."""

    cx: float
    cy: float
    half: float
    cos: float
    sin: float
    flip: float

    def to_canvas(self, points: np.ndarray) -> list[tuple[float, float]]:
        """Object-unit points -> supersampled canvas coordinates."""
        x, y = self.flip * points[:, 0], points[:, 1]
        px = (self.cx + self.half * (x * self.cos - y * self.sin)) * _SUPERSAMPLE
        py = (self.cy + self.half * (x * self.sin + y * self.cos)) * _SUPERSAMPLE
        return list(zip(px.tolist(), py.tolist(), strict=True))


@cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    xs = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(xs, xs)


def _smooth_noise(rng: np.random.Generator, size: int, cells: tuple[int, int]) -> np.ndarray:
    """Bilinearly upsampled uniform noise in [-1, 1]; ``cells`` = (columns, rows) of the coarse grid."""
    coarse = Image.fromarray(rng.uniform(-1, 1, (cells[1], cells[0])).astype(np.float32))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BILINEAR), np.float32)


def _band(coord: np.ndarray, period: float, half_width: float, px: float) -> np.ndarray:
    """Anti-aliased weight of bands of ``half_width`` every ``period`` (object units; ``px`` pixels/unit)."""
    t = coord / period
    dist = np.abs(t - np.round(t)) * period
    return np.clip((half_width - dist) * px + 0.5, 0, 1)


def _pattern_weight(p: _Product, u: np.ndarray, v: np.ndarray, view: _View) -> np.ndarray:
    """Per-pixel blend weight towards the accent colour."""
    px = view.half
    if p.pattern == "striped":
        return _band(u if p.vertical else v, p.period, 0.16 * p.period, px)
    if p.pattern == "dotted":
        row = np.floor(v / p.period)
        cu = u + 0.5 * p.period * (row % 2)  # alternate rows are offset by half a period
        dist = np.hypot(cu - np.round(cu / p.period) * p.period, v - (row + 0.5) * p.period)
        return np.clip((0.24 * p.period - dist) * px + 0.5, 0, 1)
    if p.pattern == "checked":
        return 0.45 * _band(u, p.period, 0.2 * p.period, px) + 0.45 * _band(v, p.period, 0.2 * p.period, px)
    if p.pattern == "gradient":
        return 0.8 * np.clip((v + 0.9) / 1.9, 0, 1) ** 1.4
    if p.pattern == "floral":  # five round petals per flower, drawn (cheaper than distance fields)
        size = u.shape[0]
        petals = Image.new("L", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), 0)
        draw = ImageDraw.Draw(petals)
        angles = np.radians(np.arange(5) * 72.0)
        for x, y, r in p.flowers:
            centres = np.column_stack([x + 0.55 * r * np.cos(angles), y + 0.55 * r * np.sin(angles)])
            radius = 0.45 * r * view.half * _SUPERSAMPLE
            for cx, cy in view.to_canvas(centres):
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
        return np.asarray(petals.reduce(_SUPERSAMPLE), np.float32) / 255
    return np.zeros_like(u)


def _material(p: _Product, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Relative luminance texture, specular strength and opacity: subtle cues that tell materials apart."""
    size = u.shape[0]
    fine = rng.standard_normal((size, size), dtype=np.float32)
    x, y = _grid(size)
    if p.material == "cotton":
        return 0.035 * fine, 0.0, 1.0
    if p.material == "wool":
        return 0.07 * fine + 0.08 * _smooth_noise(rng, size, (size // 4, size // 4)), 0.0, 1.0
    if p.material == "leather":
        return 0.02 * fine + 0.08 * _smooth_noise(rng, size, (12, 12)), 0.15, 1.0
    if p.material == "denim":
        return 0.07 * np.sin((x + y) * np.pi / 1.5) + 0.05 * fine, 0.0, 1.0
    if p.material == "canvas":
        weave = (np.floor(x) + np.floor(y)) % 2 * 2 - 1
        return 0.05 * weave + 0.03 * fine, 0.0, 1.0
    if p.material == "metal":  # brushed: streaks along the image's x axis
        return 0.09 * _smooth_noise(rng, size, (2, size)) + 0.015 * fine, 0.3, 1.0
    if p.material == "wood":
        grain = np.sin(v * 30 + 2.5 * np.sin(u * 3 + 20 * p.period))
        return 0.1 * grain + 0.03 * fine, 0.05, 1.0
    if p.material == "glass":
        return 0.01 * fine, 0.45, 0.7
    return 0.01 * fine, (0.35 if p.material == "plastic" else 0.3), 1.0  # plastic, ceramic: smooth and glossy


def _detail_colors(rgb: np.ndarray) -> dict[str, tuple[int, int, int]]:
    return {
        "main_dark": tuple(int(c) for c in rgb * 0.62),
        "dark": (40, 40, 46),
        "light": (236, 235, 230),
        "metal": (176, 178, 186),
        "glow": (255, 240, 170),
    }


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Plain, gradient, noisy or table-top background, mostly light, sometimes dark."""
    x, y = _grid(size)
    level = rng.uniform(165, 248) if rng.random() < 0.85 else rng.uniform(40, 110)
    base = (level + rng.normal(0, 10, 3)).astype(np.float32)
    kind = rng.choice(["plain", "gradient", "noise", "floor"], p=[0.35, 0.25, 0.2, 0.2])
    bg = np.broadcast_to(base, (size, size, 3))
    if kind == "gradient":
        other = base + rng.normal(0, 35, 3).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        t = ((x - size / 2) * np.cos(angle) + (y - size / 2) * np.sin(angle)) / size + 0.5
        bg = base + (other - base) * t[..., None]
    elif kind == "noise":
        pixel_noise = 4 * rng.standard_normal((size, size, 1), dtype=np.float32)
        bg = bg + 18 * _smooth_noise(rng, size, (size // 8, size // 8))[..., None] + pixel_noise
    elif kind == "floor":
        horizon = rng.uniform(0.55, 0.8) * size
        below = np.clip((y - horizon) / 3, 0, 1)[..., None]
        bg = bg * (1 - below * rng.uniform(0.1, 0.3))
    return np.array(bg, np.float32)  # a writable copy (the plain case is a broadcast view)


def _render(p: _Product, view_index: int, rng: np.random.Generator, size: int) -> Image.Image:
    """One view: the first is upright and clean; later views vary scale, rotation, mirroring and clutter."""
    first = view_index == 0
    scale = rng.uniform(0.68, 0.85) if first else rng.uniform(0.5, 0.88)
    angle = np.radians(rng.uniform(-6, 6) if first else rng.uniform(-28, 28))
    flip = 1.0 if first or rng.random() < 0.5 else -1.0
    half = scale * size / 2
    cx, cy = size / 2 + rng.uniform(-0.8, 0.8, 2) * (size / 2 - half)
    view = _View(float(cx), float(cy), half, float(np.cos(angle)), float(np.sin(angle)), flip)

    ss = _SUPERSAMPLE
    main = Image.new("L", (size * ss, size * ss), 0)
    detail = Image.new("RGB", main.size, (0, 0, 0))
    detail_mask = Image.new("L", main.size, 0)
    draw_main = ImageDraw.Draw(main)
    draw_detail, draw_detail_mask = ImageDraw.Draw(detail), ImageDraw.Draw(detail_mask)
    colors = _detail_colors(p.rgb)
    for part in _shapes()[p.category]:
        xy = view.to_canvas(part.points)
        targets = (
            [(draw_main, 0 if part.cut else 255)]
            if part.role == "main"
            else [(draw_detail, colors[part.role]), (draw_detail_mask, 255)]
        )
        for draw, fill in targets:
            if part.width:
                draw.line(xy, fill=fill, width=max(1, round(part.width * half * ss)), joint="curve")
            else:
                draw.polygon(xy, fill=fill)
    main = main.reduce(ss)
    mask = np.asarray(main, np.float32) / 255
    shadow = np.asarray(main.filter(ImageFilter.GaussianBlur(size / 40)), np.float32) / 255
    detail_alpha = np.asarray(detail_mask.reduce(ss), np.float32)[..., None] / 255
    detail_rgb = np.asarray(detail.reduce(ss), np.float32)  # premultiplied by coverage (drawn on black)

    # Object-frame coordinates of every pixel, so patterns and lighting turn with the object.
    gx, gy = _grid(size)
    dx, dy = (gx - view.cx) / half, (gy - view.cy) / half
    u, v = flip * (dx * view.cos + dy * view.sin), -dx * view.sin + dy * view.cos
    lum, specular, opacity = _material(p, u, v, rng)
    shade = (1 + 0.12 * np.clip(-(u + v) / 2, -1, 1) + lum)[..., None]
    if p.pattern == "solid":
        texture = p.rgb * shade
    else:
        texture = (p.rgb + (p.accent - p.rgb) * _pattern_weight(p, u, v, view)[..., None]) * shade
    if specular:
        highlight = (specular * np.exp(-((u + 0.35) ** 2 + (v + 0.4) ** 2) / 0.08))[..., None]
        texture += (255 - texture) * highlight

    out = _background(rng, size)
    shift = max(1, size // 40)
    out[shift:, shift:] *= (1 - 0.3 * shadow[:-shift, :-shift])[..., None]
    alpha = (mask * opacity)[..., None]
    out += (texture - out) * alpha
    out *= (1 - 0.5 * np.clip(mask - shadow, 0, 1))[..., None]  # a darker rim keeps pale objects visible
    out = out * (1 - detail_alpha) + detail_rgb
    if not first and rng.random() < OCCLUSION_RATE:
        w, h = (rng.uniform(0.22, 0.4, 2) * size).astype(int)
        ox, oy = (np.array([view.cx, view.cy]) + rng.uniform(-0.7, 0.7, 2) * half).astype(int)
        out[max(0, oy - h // 2) : oy + h // 2, max(0, ox - w // 2) : ox + w // 2] = rng.uniform(90, 190)
    sigma = rng.uniform(0, 5)
    out = out * rng.uniform(0.9, 1.08) + sigma * rng.standard_normal((size, size, 1), dtype=np.float32)
    image = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    if not first and rng.random() < 0.15:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.0)))
    return image


def _encode(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, str]:
    """PNG or (one in three) JPEG bytes with fixed settings and no metadata, so files are reproducible."""
    buf = io.BytesIO()
    if rng.random() < JPEG_RATE:
        image.save(buf, format="JPEG", quality=90, subsampling="4:2:0", optimize=False, progressive=False)
        return buf.getvalue(), "jpg"
    image.save(buf, format="PNG", compress_level=1, optimize=False)
    return buf.getvalue(), "png"
