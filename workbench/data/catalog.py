"""Deterministic synthetic product catalogue: rendered product images and bilingual titles.

Each product (category, colour, material, pattern, brand) gets 2-3 rendered views and 2-3 titles in English
and Chinese. Randomness comes from generators seeded by (seed, product index[, view]), so a catalogue of n
products is a prefix of every larger one with the same seed, and the same seed gives byte-identical files. The
recipe is documented in eval_sets/README.md.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.model import ATTRIBUTE_COLUMNS, IMAGE_COLUMNS, PRODUCT_COLUMNS, TEXT_COLUMNS
from workbench.data.rendering import Product, encode_image, render_view
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
_CHUNK = 25  # products per work unit and progress step
_PARALLEL_FROM = 100  # products; smaller catalogues render in the calling thread


@dataclass(frozen=True)
class CatalogParts:
    """The generated catalogue as eval-set frames (docs/ARCHITECTURE.md layout); no pairs."""

    products: pd.DataFrame
    attributes: pd.DataFrame
    images: pd.DataFrame
    texts: pd.DataFrame


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
            data, ext = encode_image(render_view(product, view, view_rng, image_size), view_rng)
            path = out_dir / f"{image_id}.{ext}"
            path.write_bytes(data)
            images.append((image_id, pid, str(path), hashlib.sha256(data).hexdigest(), image_size, image_size))
    return products, attributes, images, texts


# --- products and titles ------------------------------------------------------------------------------------


def _make_product(index: int, seed: int) -> Product:
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
    return Product(
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


def _make_titles(product: Product, rng: np.random.Generator) -> list[tuple[str, str]]:
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


def _typo(title: str, product: Product, rng: np.random.Generator) -> str:
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
