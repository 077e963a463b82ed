"""Product-level splits and seeded negative generation.

Splits are made by product (no product on two sides), stratified by category, deterministic from the seed.
Every negative pairs an image with a text from the *same split*, so nothing leaks across splits.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from workbench.data.model import PAIR_COLUMNS, SPLITS, EvalSetData
from workbench.data.vocab import swap_attribute

NEGATIVE_KINDS = ("random", "hard", "attribute")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def _stable_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:12]


def split_products(
    products: pd.DataFrame, *, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict[str, str]:
    """Map each product id to train/val/test, stratified by category, deterministic for a seed."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    categories = products["category"].fillna("").astype(str).to_numpy()
    ids = products["product_id"].astype(str).to_numpy()
    # Each product gets its quantile within its own (shuffled) category; cutting the global order by those
    # quantiles stratifies by category while keeping the global fractions even for tiny categories.
    position = np.empty(len(ids))
    for category in sorted(set(categories)):
        members = np.flatnonzero(categories == category)
        members = members[np.argsort(ids[members], kind="stable")]
        position[members[rng.permutation(len(members))]] = (np.arange(len(members)) + rng.random()) / len(members)
    order = np.lexsort((ids, position))
    n_train = int(round(fractions[0] * len(ids)))
    n_val = int(round(fractions[1] * len(ids)))
    assignment: dict[str, str] = {}
    for rank, idx in enumerate(order):
        assignment[ids[idx]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return assignment


def _positive_pairs(images: pd.DataFrame, texts: pd.DataFrame) -> list[tuple[str, str]]:
    """Each text with one image of its product (round robin), and each image not yet used with the first text."""
    pairs: list[tuple[str, str]] = []
    text_groups = {p: sorted(g["text_id"]) for p, g in texts.dropna(subset=["product_id"]).groupby("product_id")}
    for product, group in images.groupby("product_id"):
        image_ids = sorted(group["image_id"])
        text_ids = text_groups.get(product, [])
        if not text_ids:
            continue
        used = set()
        for k, text_id in enumerate(text_ids):
            image_id = image_ids[k % len(image_ids)]
            used.add(image_id)
            pairs.append((image_id, text_id))
        pairs.extend((image_id, text_ids[0]) for image_id in image_ids if image_id not in used)
    return sorted(pairs)


def _draw_other_product(
    pool: list[str], text_product: dict[str, object], product: object, rng: np.random.Generator, tries: int = 32
) -> str | None:
    """A random text from ``pool`` that belongs to another product (None if there seems to be none)."""
    for _ in range(tries if pool else 0):
        candidate = pool[int(rng.integers(len(pool)))]
        if text_product[candidate] != product:
            return candidate
    return None


def make_pairs(
    data: EvalSetData,
    *,
    negatives: tuple[str, ...] = NEGATIVE_KINDS,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> EvalSetData:
    """Return a copy of ``data`` with labelled pairs: positives plus one negative of each kind per positive.

    Sources that already carry labelled pairs keep them; rows without a split get their product's split.
    Attribute-swap negatives add counterfactual texts (``product_id`` None) to ``texts``.
    """
    unknown = sorted(set(negatives) - set(NEGATIVE_KINDS))
    if unknown:
        raise ValueError(f"Unknown negative kind(s) {unknown}. Available: {list(NEGATIVE_KINDS)}")
    assignment = split_products(data.products, seed=seed, fractions=fractions)
    image_product = dict(zip(data.images["image_id"], data.images["product_id"], strict=True))

    if data.pairs is not None:
        pairs = data.pairs.copy()
        missing = pairs["split"].isna()
        pairs.loc[missing, "split"] = [assignment[image_product[i]] for i in pairs.loc[missing, "image_id"]]
        return EvalSetData(data.products, data.attributes, data.images, data.texts, pairs[list(PAIR_COLUMNS)])

    rng = np.random.default_rng(seed)
    texts = data.texts.sort_values("text_id").reset_index(drop=True)
    text_rows = texts.set_index("text_id")
    category = dict(zip(data.products["product_id"], data.products["category"], strict=True))
    by_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    by_split_category: dict[tuple[str, object], list[str]] = {}
    for text_id, product in zip(texts["text_id"], texts["product_id"], strict=True):
        if product is None or pd.isna(product):
            continue
        split = assignment[product]
        by_split[split].append(text_id)
        by_split_category.setdefault((split, category.get(product)), []).append(text_id)

    text_product = dict(zip(texts["text_id"], texts["product_id"], strict=True))
    rows: list[tuple] = []
    new_texts: list[dict] = []
    for image_id, text_id in _positive_pairs(data.images, texts):
        product = image_product[image_id]
        split = assignment[product]
        rows.append((_stable_id("pp-", image_id, text_id), image_id, text_id, 1, split, "positive", None))
        for kind in negatives:
            if kind == "attribute":
                source = text_rows.loc[text_id]
                swap = swap_attribute(str(source["text"]), rng, language=source["language"])
                if swap is None:
                    continue
                neg_text_id = _stable_id("tx-", text_id, swap.text)
                new_texts.append(
                    {"text_id": neg_text_id, "product_id": None, "text": swap.text, "language": source["language"],
                     "sha256": hashlib.sha256(swap.text.encode()).hexdigest()}
                )
                rows.append((_stable_id("pa-", image_id, neg_text_id), image_id, neg_text_id, 0, split, kind,
                             swap.attribute))
                continue
            pool = by_split[split] if kind == "random" else by_split_category.get((split, category.get(product)), [])
            neg_text_id = _draw_other_product(pool, text_product, product, rng)
            if neg_text_id is None:
                continue
            rows.append((_stable_id(f"p{kind[0]}-", image_id, neg_text_id), image_id, neg_text_id, 0, split, kind,
                         None))
    pairs = pd.DataFrame(rows, columns=list(PAIR_COLUMNS)).drop_duplicates("pair_id").reset_index(drop=True)
    if new_texts:
        texts = pd.concat([texts, pd.DataFrame(new_texts)], ignore_index=True).drop_duplicates("text_id")
    return EvalSetData(data.products, data.attributes, data.images, texts.reset_index(drop=True), pairs)
