"""The synthetic task every fusion test uses: 8 products, image and text vectors = product prototype + noise.

Images and texts live in different spaces (different dims, unrelated prototypes), so zero-shot cosine is
impossible there and a learned mapping is needed; the `cosine` head gets a shared-space variant instead.
Fitted heads are cached per process, so the test modules share one fit per head.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from workbench.models.fusion import FusionData, FusionHead, PairSet, create_fusion_head

N_PRODUCTS, PER_PRODUCT = 8, 11
SPLIT_OF_POSITION = ["train"] * 5 + ["val"] * 3 + ["test"] * 3
D_IMG, D_TXT, L_IMG, L_TXT, D_TOK_IMG, D_TOK_TXT = 24, 20, 5, 4, 12, 10

# name -> (options, trained with a seed, uses the shared-space data). Every registered head needs an entry.
FIXTURES: dict[str, tuple[dict[str, Any], bool, bool]] = {
    "cosine": ({}, False, True),
    "contrastive": ({"dim": 16, "epochs": 40, "lr": 1e-2, "batch_size": 32, "patience": 8}, True, False),
    "cca": ({"n_components": 6}, False, False),
    "concat_mlp": ({"width": 16, "hidden": 32, "epochs": 40, "lr": 3e-3, "batch_size": 32}, True, False),
    "cross_attention": (
        {"width": 32, "num_heads": 4, "epochs": 40, "lr": 3e-3, "batch_size": 32, "patience": 8},
        True,
        False,
    ),
    "attribute_tags": ({"width": 16, "epochs": 40, "lr": 3e-3, "batch_size": 32}, True, False),
    "late_fusion": (
        {
            "heads": [
                {"type": "cca", "n_components": 6},
                {"type": "concat_mlp", "width": 16, "hidden": 32, "epochs": 15, "lr": 3e-3, "batch_size": 32},
            ]
        },
        True,
        False,
    ),
    "multitask": (
        {"width": 16, "hidden": 32, "epochs": 40, "lr": 3e-3, "batch_size": 32, "category_weight": 1.0},
        True,
        False,
    ),
    "soft_attention_cosine": (
        {"width": 16, "epochs": 40, "lr": 1e-2, "batch_size": 32, "patience": 8},
        True,
        False,
    ),
    "attention_fusion": (
        {"width": 32, "num_heads": 2, "hidden": 32, "epochs": 12, "lr": 5e-3, "batch_size": 64, "patience": 4},
        True,
        False,
    ),
}


def _tags(product: int) -> np.ndarray:
    tags = np.zeros(6, dtype=np.float32)
    tags[product % 3] = 1  # colour
    tags[3 + (product // 3) % 3] = 1  # material
    return tags


@functools.cache
def make_data(shared: bool = False) -> tuple[FusionData, dict[str, PairSet]]:
    """Items of each product are split by position; pairs are all positives plus as many random negatives."""
    rng = np.random.default_rng(0)
    img_proto = rng.normal(size=(N_PRODUCTS, D_IMG))
    txt_proto = img_proto if shared else rng.normal(size=(N_PRODUCTS, D_TXT))
    product = np.repeat(np.arange(N_PRODUCTS), PER_PRODUCT)
    split = np.array(SPLIT_OF_POSITION * N_PRODUCTS)
    n = len(product)
    # Random scales and an offset: the heads must normalise their own inputs.
    image_vecs = (img_proto[product] + 0.7 * rng.normal(size=(n, D_IMG))) * rng.uniform(0.5, 3, (n, 1)) + 2.0
    text_vecs = (txt_proto[product] + 0.7 * rng.normal(size=(n, txt_proto.shape[1]))) * rng.uniform(0.5, 3, (n, 1))
    region_proto = rng.normal(size=(N_PRODUCTS, L_IMG, D_TOK_IMG))
    word_proto = rng.normal(size=(N_PRODUCTS, L_TXT, D_TOK_TXT))
    image_tokens = region_proto[product] + 0.5 * rng.normal(size=(n, L_IMG, D_TOK_IMG))
    text_tokens = word_proto[product] + 0.5 * rng.normal(size=(n, L_TXT, D_TOK_TXT))
    image_mask = np.arange(L_IMG)[None, :] < rng.integers(3, L_IMG + 1, n)[:, None]
    text_mask = np.arange(L_TXT)[None, :] < rng.integers(2, L_TXT + 1, n)[:, None]
    image_tokens[~image_mask] = 50 * rng.normal(size=(int((~image_mask).sum()), D_TOK_IMG))  # padding garbage
    category = product % 4
    category[::7] = -1
    tags = np.stack([_tags(p) for p in product])
    data = FusionData(
        image_vecs=image_vecs.astype(np.float32),
        text_vecs=text_vecs.astype(np.float32),
        image_tokens=image_tokens.astype(np.float32),
        image_mask=image_mask,
        text_tokens=text_tokens.astype(np.float32),
        text_mask=text_mask,
        image_tags=tags,
        text_tags=tags.copy(),
        image_product=np.array([f"p{p}" for p in product], dtype=object),
        text_product=np.array([f"p{p}" if i % 17 else None for i, p in enumerate(product)], dtype=object),
        image_category=category,
    )
    splits = {}
    for name in ("train", "val", "test"):
        items = np.flatnonzero(split == name)
        ii, tt = np.meshgrid(items, items, indexing="ij")
        ii, tt = ii.ravel(), tt.ravel()
        same = product[ii] == product[tt]
        positive = same & np.array([data.text_product[t] is not None for t in tt])
        neg = rng.choice(np.flatnonzero(~same), size=int(positive.sum()), replace=False)
        pos = np.flatnonzero(positive)
        splits[name] = PairSet(
            np.r_[ii[pos], ii[neg]], np.r_[tt[pos], tt[neg]], np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        )
    return data, splits


def fit_head(name: str, seed: int = 0, **overrides: Any) -> tuple[FusionHead, dict[str, Any]]:
    """A fresh head with its fixture options (plus `overrides`), fitted on the train split."""
    options, _, shared = FIXTURES[name]
    data, splits = make_data(shared)
    head = create_fusion_head(name, **{**options, **overrides})
    curves = head.fit(data, splits["train"], splits["val"], seed=seed, device="cpu")
    return head, curves


@functools.cache
def fitted(name: str) -> tuple[FusionHead, dict[str, Any]]:
    """`fit_head(name)`, once per process; treat the head as read-only."""
    return fit_head(name)


def tiny_data(image_vecs: Any, text_vecs: Any) -> FusionData:
    """Vectors only (no tokens, no tags, one product, unknown categories), for hand-computed cases."""
    ni, nt = len(image_vecs), len(text_vecs)
    return FusionData(
        image_vecs=np.asarray(image_vecs, np.float32),
        text_vecs=np.asarray(text_vecs, np.float32),
        image_tokens=None,
        image_mask=None,
        text_tokens=None,
        text_mask=None,
        image_tags=np.zeros((ni, 0), np.float32),
        text_tags=np.zeros((nt, 0), np.float32),
        image_product=np.array(["a"] * ni, dtype=object),
        text_product=np.array(["a"] * nt, dtype=object),
        image_category=np.full(ni, -1),
    )
