"""The stages a run and a restore share: encoders (created, fitted on the train items, keyed in the embedding
cache), the fusion inputs built from an eval set and its vectors, and the fusion head trained from the config's seed.

One implementation, so a restored run rebuilds exactly the models the run scored with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from workbench.config import RunConfig
from workbench.data.model import SPLITS, EvalSetData
from workbench.data.vocab import tag_vector, text_tags
from workbench.models import create_encoder
from workbench.models.fusion import FusionData, PairSet, create_fusion_head
from workbench.run.encoding import cached_hashes, decode_side, load_items


def _codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    classes = sorted(v for v in values.dropna().unique())
    lookup = {v: i for i, v in enumerate(classes)}
    return np.array([lookup.get(v, -1) if not pd.isna(v) else -1 for v in values], dtype=np.int64), classes


def product_attributes(data: EvalSetData) -> dict[str, dict[str, str]]:
    attrs: dict[str, dict[str, str]] = {p: {} for p in data.products["product_id"]}
    for product, name, value in data.attributes[["product_id", "name", "value"]].itertuples(index=False):
        attrs.setdefault(product, {})[name] = value
    for product, category in data.products[["product_id", "category"]].itertuples(index=False):
        if category is not None and not pd.isna(category):
            attrs.setdefault(product, {})["category"] = category
    return attrs


def fit_targets(data: EvalSetData, modality: str, product_ids: pd.Series) -> dict[str, np.ndarray]:
    """Supervised targets for trainable towers: category and each attribute, as integer codes (-1 unknown)."""
    attrs = product_attributes(data)
    names = sorted({n for a in attrs.values() for n in a if n != "brand"})
    return {
        name: _codes(pd.Series([attrs.get(p, {}).get(name) for p in product_ids], dtype=object))[0]
        for name in names
    }


def _hash_strings(values) -> str:
    digest = hashlib.sha256()
    for v in values:
        digest.update(str(v).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def _encoder_cache_key(encoder, config: RunConfig, train_hashes: list[str]) -> str:
    """Fitted encoders are keyed by their config, the train items and the seed (fitting is deterministic)."""
    base = hashlib.sha256(
        json.dumps([type(encoder).__name__, encoder.get_config_dict()], sort_keys=True, default=str).encode()
    ).hexdigest()
    if not encoder.requires_fit:
        return encoder.fingerprint()
    return hashlib.sha256(f"{base}|{_hash_strings(sorted(train_hashes))}|{config.seed}".encode()).hexdigest()


# ------------------------------------------------------------------------------------------- encoders and head
def create_side_encoder(config: RunConfig, modality: str):
    """A fresh (unfitted) encoder of one side of ``config``."""
    spec = dict(config.image_encoder if modality == "image" else config.text_encoder)
    return create_encoder(spec.pop("type"), **spec)


def side_items(data: EvalSetData, modality: str) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """One side's item frame, its sources (image paths or texts) and which items occur in train pairs."""
    frame = data.images if modality == "image" else data.texts
    sources = frame["path"] if modality == "image" else frame["text"]
    pair_split = data.pairs.groupby("image_id" if modality == "image" else "text_id")["split"].first()
    in_train = frame[frame.columns[0]].map(pair_split).eq("train").to_numpy()
    return frame, sources, in_train


def side_cache_keys(db, encoder, config: RunConfig, data: EvalSetData, modality: str,
                    tokens: bool) -> tuple[str, str]:
    """The encoder's fingerprint in the cache and the key its vectors (and tokens) are read from."""
    frame, _, in_train = side_items(data, modality)
    cache_key = _encoder_cache_key(encoder, config, list(frame["sha256"][in_train]))
    key = cache_key + ("/tokens" if tokens else "")
    if not tokens and len(cached_hashes(db, cache_key + "/tokens", list(frame["sha256"]))) == frame["sha256"].nunique():
        key = cache_key + "/tokens"  # an earlier token-level run stored the pooled vectors too
    return cache_key, key


def fit_side_encoder(encoder, config: RunConfig, data: EvalSetData, modality: str, device: torch.device,
                     progress: Callable[[float, str], None] | None = None) -> None:
    """Fit a trainable encoder on the train split's items (deterministic for the config's seed)."""
    frame, sources, in_train = side_items(data, modality)
    items = load_items(modality, list(sources[in_train]), decode_side(encoder))
    targets = fit_targets(data, modality, frame["product_id"][in_train])
    encoder.fit(items, targets=targets, seed=config.seed, device=device, progress=progress)


def create_run_head(config: RunConfig):
    """A fresh (unfitted) fusion head of ``config``."""
    head_spec = dict(config.fusion)
    return create_fusion_head(head_spec.pop("type"), **head_spec)


def fit_run_head(head, config: RunConfig, data: EvalSetData, fusion_data: FusionData, device: torch.device,
                 progress=None) -> dict:
    """Train the head on the train pairs (early-stopped on val) from a freshly seeded RNG; returns its curves."""
    splits = pair_sets(data)
    seed_everything(config.seed)
    return head.fit(fusion_data, splits["train"], splits["val"], seed=config.seed, device=device, progress=progress)


def build_fusion_data(data: EvalSetData, image_side, text_side) -> FusionData:
    """The head's inputs over the whole eval set: each side's (vectors, tokens, mask) with the items' tags (images
    from their product's attributes, texts by vocabulary matching), products and categories."""
    attrs = product_attributes(data)
    image_tags = np.stack([tag_vector(attrs.get(p, {})) for p in data.images["product_id"]])
    text_tag = np.stack([text_tags(t, lang) for t, lang in zip(data.texts["text"], data.texts["language"],
                                                               strict=True)])
    category = dict(zip(data.products["product_id"], data.products["category"], strict=True))
    image_category, _ = _codes(pd.Series([category.get(p) for p in data.images["product_id"]], dtype=object))
    return FusionData(
        image_vecs=image_side[0], text_vecs=text_side[0],
        image_tokens=image_side[1], image_mask=image_side[2],
        text_tokens=text_side[1], text_mask=text_side[2],
        image_tags=image_tags.astype(np.float32), text_tags=text_tag.astype(np.float32),
        image_product=data.images["product_id"].to_numpy(dtype=object),
        text_product=data.texts["product_id"].to_numpy(dtype=object),
        image_category=image_category,
    )


def pair_sets(data: EvalSetData) -> dict[str, PairSet]:
    """Each split's pairs as row indices into the eval set's images and texts, with their labels."""
    image_index = {v: i for i, v in enumerate(data.images["image_id"])}
    text_index = {v: i for i, v in enumerate(data.texts["text_id"])}
    out = {}
    for split in SPLITS:
        rows = data.pairs[data.pairs["split"] == split]
        out[split] = PairSet(
            image_idx=rows["image_id"].map(image_index).to_numpy(dtype=np.int64),
            text_idx=rows["text_id"].map(text_index).to_numpy(dtype=np.int64),
            label=rows["label"].to_numpy(dtype=np.int64),
        )
    return out


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's global RNGs (fitting code that draws from them is deterministic per seed)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
