"""Rebuild a finished run's fitted encoders and fusion head, to score new content and to explain scores.

Runs store scores and embeddings, not models. :func:`restore_run_models` rebuilds them deterministically from the
run's stored config, eval set and seed through the run's own stages (:mod:`workbench.run.fitting`: fit the encoders
on the train items, read the run's vectors from the embedding cache, train the head from the same seed) and checks
the result against what the run stored: the refit encoders must reproduce the cached embeddings and the head the
stored scores.

New content (a perturbed photo, a typed query) is scored with the same head: a new text's tags come from vocabulary
matching, a new image's tags and category from a reference image of the eval set (``NewImage(like=...)``) or none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from workbench import store
from workbench.config import RunConfig, config_from_dict
from workbench.data.evalsets import load_eval_set
from workbench.data.images import load_image
from workbench.data.model import EvalSetData
from workbench.data.vocab import text_tags
from workbench.models import Encoder, load_plugin
from workbench.models.fusion import FusionData, FusionHead
from workbench.run.device import resolve_device
from workbench.run.encoding import (
    blob_to_tokens,
    cached_hashes,
    decode_side,
    encode_batch,
    pad_tokens,
    read_cache,
    write_cache,
)
from workbench.run.fitting import (
    build_fusion_data,
    create_run_head,
    create_side_encoder,
    fit_run_head,
    fit_side_encoder,
    side_cache_keys,
    side_items,
)
from workbench.run.runner import get_run

SCORE_TOLERANCE = 1e-4  # restored scores may differ from stored ones by float noise only
VECTOR_TOLERANCE = 1e-4  # refit encoders must reproduce the cached vectors to this (max abs difference)
N_VERIFY_ITEMS = 16  # items per refit encoder re-encoded and compared with the cache


class RestoreError(RuntimeError):
    """A run whose models cannot be rebuilt (not finished, eval set changed, or not reproducible here)."""


@dataclass(frozen=True, eq=False)
class NewImage:
    """An image that is not in the eval set. ``like``: the image_id whose tags, category and product it takes
    (e.g. the photo it was perturbed from); ``key``: a content key under which its embedding is cached (None:
    encoded every time). Give each distinct content its own key, never the clean item's hash."""

    image: Image.Image
    like: str | None = None
    key: str | None = None


@dataclass(frozen=True, eq=False)
class NewText:
    """A text that is not in the eval set; tags come from vocabulary matching. ``product_id``: the product it
    describes, if any; ``key`` as for :class:`NewImage`."""

    text: str
    language: str | None = None
    product_id: str | None = None
    key: str | None = None


ImageItem = str | NewImage  # an image_id of the eval set, or new content
TextItem = str | NewText  # a text_id of the eval set, or new content


@dataclass
class SideEncoding:
    """Encoded items of one side: vectors (N, D) and, for token heads, real tokens per item (float16-rounded as
    the cache stores them)."""

    vectors: np.ndarray
    tokens: list[np.ndarray] | None


@dataclass
class RunModels:
    """A finished run's fitted encoders and head, its eval set and the fusion inputs it was scored with."""

    run_id: str
    eval_set: str
    config: RunConfig
    data: EvalSetData
    image_encoder: Encoder
    text_encoder: Encoder
    head: FusionHead
    fusion_data: FusionData
    device: torch.device
    db: str | os.PathLike[str] | None = None
    cache_keys: dict[str, str] = field(default_factory=dict)
    max_score_deviation: float | None = None  # largest |restored - stored| over the checked scores

    def __post_init__(self) -> None:
        self._image_rows = {v: i for i, v in enumerate(self.data.images["image_id"])}
        self._text_rows = {v: i for i, v in enumerate(self.data.texts["text_id"])}
        self._pairs = self.data.pairs.set_index("pair_id", drop=False)

    # ------------------------------------------------------------------------------------------------ lookups
    def image_row(self, image_id: str) -> int:
        try:
            return self._image_rows[image_id]
        except KeyError:
            raise KeyError(f"Image {image_id!r} is not in eval set {self.eval_set!r}.") from None

    def text_row(self, text_id: str) -> int:
        try:
            return self._text_rows[text_id]
        except KeyError:
            raise KeyError(f"Text {text_id!r} is not in eval set {self.eval_set!r}.") from None

    def pair(self, pair_id: str) -> dict[str, Any]:
        """One pair's row: pair_id, image_id, text_id, label, split, pair_kind …"""
        if pair_id not in self._pairs.index:
            raise KeyError(f"Pair {pair_id!r} is not in this run's eval set; see the run's scores for pair ids.")
        return self._pairs.loc[pair_id].to_dict()

    def load_image(self, image_id: str) -> Image.Image:
        """The eval-set image as the run decoded it (reduced to the encoder's decode size)."""
        path = self.data.images["path"].iloc[self.image_row(image_id)]
        return load_image(path, max_side=decode_side(self.image_encoder))

    def text(self, text_id: str) -> str:
        return str(self.data.texts["text"].iloc[self.text_row(text_id)])

    def text_language(self, text_id: str) -> str | None:
        value = self.data.texts["language"].iloc[self.text_row(text_id)]
        return None if value is None or pd.isna(value) else str(value)

    # ----------------------------------------------------------------------------------------------- encoding
    def encode_images(self, images: Sequence[Image.Image], keys: Sequence[str | None] | None = None) -> SideEncoding:
        """Encode new images as the run would have (reduced to the decode size first); ``keys`` cache them."""
        return self._encode("image", [self.as_decoded(image) for image in images], keys)

    def as_decoded(self, image: Image.Image) -> Image.Image:
        """A new photo as the run decodes its images: RGB, long side at most the encoder's decode size."""
        side = decode_side(self.image_encoder)
        image = image.convert("RGB")
        if max(image.size) > side:
            image = image.copy()
            image.thumbnail((side, side))
        return image

    def encode_texts(self, texts: Sequence[str], keys: Sequence[str | None] | None = None) -> SideEncoding:
        """Encode new texts with the run's text encoder; ``keys`` cache them."""
        return self._encode("text", list(texts), keys)

    def _encode(self, modality: str, items: list, keys: Sequence[str | None] | None) -> SideEncoding:
        encoder = self.image_encoder if modality == "image" else self.text_encoder
        tokens = self.head.uses_tokens
        keys = list(keys) if keys is not None else [None] * len(items)
        if len(keys) != len(items):
            raise ValueError(f"got {len(keys)} cache keys for {len(items)} {modality}s")
        cache_key = self.cache_keys[modality]
        have = cached_hashes(self.db, cache_key, [k for k in keys if k]) if any(keys) else set()
        todo = [i for i, k in enumerate(keys) if not k or k not in have]
        vectors: list[np.ndarray | None] = [None] * len(items)
        token_list: list[np.ndarray | None] = [None] * len(items)
        for start in range(0, len(todo), self.config.batch_size):
            chunk = todo[start : start + self.config.batch_size]
            vecs, blobs = encode_batch(encoder, encoder.preprocess([items[i] for i in chunk]), self.device,
                                       tokens=tokens)
            for j, i in enumerate(chunk):
                vectors[i] = vecs[j]
                token_list[i] = blob_to_tokens(blobs[j]) if blobs else None
            fresh = [(keys[i], j) for j, i in enumerate(chunk) if keys[i]]
            if fresh:
                write_cache(self.db, cache_key, [k for k, _ in fresh], vecs[[j for _, j in fresh]],
                            [blobs[j] for _, j in fresh] if blobs else None)
        cached = [i for i, k in enumerate(keys) if k and k in have]
        if cached:
            vecs, toks = read_cache(self.db, cache_key, [keys[i] for i in cached], tokens=tokens)
            for j, i in enumerate(cached):
                vectors[i] = vecs[j]
                token_list[i] = toks[j] if toks else None
        dim = self.fusion_data.image_vecs.shape[1] if modality == "image" else self.fusion_data.text_vecs.shape[1]
        stacked = np.stack(vectors).astype(np.float32) if items else np.zeros((0, dim), np.float32)
        return SideEncoding(stacked, token_list if tokens else None)

    # ---------------------------------------------------------------------------------------------- scoring
    def fusion_data_for(self, images: Sequence[ImageItem], texts: Sequence[TextItem]) -> FusionData:
        """Fusion inputs whose rows are ``images`` and ``texts`` in order (eval-set ids or new content)."""
        image_side = self._side_rows("image", images)
        text_side = self._side_rows("text", texts)
        return FusionData(
            image_vecs=image_side["vecs"], text_vecs=text_side["vecs"],
            image_tokens=image_side["tokens"], image_mask=image_side["mask"],
            text_tokens=text_side["tokens"], text_mask=text_side["mask"],
            image_tags=image_side["tags"], text_tags=text_side["tags"],
            image_product=image_side["product"], text_product=text_side["product"],
            image_category=image_side["category"],
        )

    def score(self, images: Sequence[ImageItem], texts: Sequence[TextItem]) -> np.ndarray:
        """(N,) float32 scores of the aligned pairs (images[k], texts[k]); each distinct item is encoded once."""
        if len(images) != len(texts):
            raise ValueError(f"images and texts must be aligned pairs; got {len(images)} and {len(texts)}")
        image_items, image_idx = _distinct(images)
        text_items, text_idx = _distinct(texts)
        data = self.fusion_data_for(image_items, text_items)
        if not len(image_idx):
            return np.zeros(0, dtype=np.float32)
        return self.head.score_pairs(data, image_idx, text_idx)

    def score_pair_ids(self, pair_ids: Sequence[str]) -> np.ndarray:
        """The restored scores of eval-set pairs (equal to the stored ones up to float noise)."""
        rows = [self.pair(p) for p in pair_ids]
        image_idx = np.array([self.image_row(r["image_id"]) for r in rows], dtype=np.int64)
        text_idx = np.array([self.text_row(r["text_id"]) for r in rows], dtype=np.int64)
        return self.head.score_pairs(self.fusion_data, image_idx, text_idx)

    def _side_rows(self, modality: str, items: Sequence[ImageItem | TextItem]) -> dict[str, Any]:
        fd = self.fusion_data
        is_image = modality == "image"
        new_type = NewImage if is_image else NewText
        for item in items:
            if not isinstance(item, str | new_type):
                raise TypeError(f"{modality} items must be {modality}_id strings or {new_type.__name__}; "
                                f"got {type(item).__name__}")
        new_positions = [i for i, item in enumerate(items) if isinstance(item, new_type)]
        new_items = [items[i] for i in new_positions]
        if is_image:
            encoded = self.encode_images([n.image for n in new_items], [n.key for n in new_items])
        else:
            encoded = self.encode_texts([n.text for n in new_items], [n.key for n in new_items])
        vecs_all, tags_all = (fd.image_vecs, fd.image_tags) if is_image else (fd.text_vecs, fd.text_tags)
        tokens_all, mask_all = (fd.image_tokens, fd.image_mask) if is_image else (fd.text_tokens, fd.text_mask)
        products_all = fd.image_product if is_image else fd.text_product
        vecs, tags, products, categories, tokens = [], [], [], [], []
        new_index = {pos: k for k, pos in enumerate(new_positions)}
        for i, item in enumerate(items):
            if isinstance(item, str):
                row = self.image_row(item) if is_image else self.text_row(item)
                vecs.append(vecs_all[row])
                tags.append(tags_all[row])
                products.append(products_all[row])
                categories.append(fd.image_category[row] if is_image else -1)
                if tokens_all is not None:
                    tokens.append(tokens_all[row][mask_all[row]] if mask_all is not None else tokens_all[row])
                continue
            k = new_index[i]
            vecs.append(encoded.vectors[k])
            if encoded.tokens is not None:
                tokens.append(encoded.tokens[k])
            if is_image:
                like = None if item.like is None else self.image_row(item.like)
                tags.append(np.zeros(fd.image_tags.shape[1], np.float32) if like is None else fd.image_tags[like])
                products.append(None if like is None else fd.image_product[like])
                categories.append(-1 if like is None else fd.image_category[like])
            else:
                tags.append(text_tags(item.text, item.language))
                products.append(item.product_id)
                categories.append(-1)
        dim = vecs_all.shape[1]
        out: dict[str, Any] = {
            "vecs": np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32),
            "tags": np.stack(tags).astype(np.float32) if tags else np.zeros((0, tags_all.shape[1]), np.float32),
            "product": np.array(products, dtype=object),
            "category": np.array(categories, dtype=np.int64),
            "tokens": None, "mask": None,
        }
        if self.head.uses_tokens and tokens:
            out["tokens"], out["mask"] = pad_tokens(tokens)
        return out


def _distinct(items: Sequence[Any]) -> tuple[list[Any], np.ndarray]:
    """Distinct items (ids by value, new content by identity) and each input's index among them."""
    seen: dict[Any, int] = {}
    distinct: list[Any] = []
    index = np.empty(len(items), dtype=np.int64)
    for k, item in enumerate(items):
        key = item if isinstance(item, str) else ("new", id(item))
        if key not in seen:
            seen[key] = len(distinct)
            distinct.append(item)
        index[k] = seen[key]
    return distinct, index


# ------------------------------------------------------------------------------------------------------ restore
def restore_run_models(run_id: str, *, db: str | os.PathLike[str] | None = None, device: str = "cpu",
                       verify: bool = True, progress: Callable[[str], None] | None = None) -> RunModels:
    """Rebuild a finished run's fitted encoders and head from its config, eval set and seed.

    Trainable encoders are refit on the train items and the head retrained (seconds for the bundled configs; a
    cached ``RunModels`` serves many calls). With ``verify`` the refit encoders must reproduce the run's cached
    vectors and the head its stored test scores, else :class:`RestoreError` says by how much they differ (a run
    trained on another device or library version cannot be rebuilt exactly here).
    """
    say = progress or (lambda message: None)
    record = get_run(run_id, db=db)
    if record["status"] != "done":
        raise RestoreError(f"Run {run_id} is {record['status']}; only finished runs ('done') can be restored.")
    config = config_from_dict(record["config"])
    torch_device = resolve_device(device)
    for plugin in config.plugins:
        load_plugin(plugin)
    with store.connect(db) as con:
        data = load_eval_set(con, record["eval_set"])
        current = con.execute("SELECT content_hash FROM eval_sets WHERE name = ?", [record["eval_set"]]).fetchone()
    if record.get("eval_set_hash") and current and current[0] != record["eval_set_hash"]:
        raise RestoreError(f"Eval set {record['eval_set']!r} changed since run {run_id} (content hash "
                           f"{current[0][:12]} ≠ {record['eval_set_hash'][:12]}); re-run the config to explain it.")
    head = create_run_head(config)
    tokens = head.uses_tokens
    sides, encoders, keys = {}, {}, {}
    for modality in ("image", "text"):
        encoder = create_side_encoder(config, modality)
        if encoder.requires_fit:
            say(f"fitting {encoder.name}")
            fit_side_encoder(encoder, config, data, modality, torch_device)
        _, keys[modality] = side_cache_keys(db, encoder, config, data, modality, tokens)
        sides[modality] = _cached_side(db, keys[modality], data, modality, tokens, record["run_id"])
        encoders[modality] = encoder
    fusion_data = build_fusion_data(data, sides["image"], sides["text"])
    say(f"training {head.name}")
    fit_run_head(head, config, data, fusion_data, torch_device)
    models = RunModels(run_id, record["eval_set"], config, data, encoders["image"], encoders["text"], head,
                       fusion_data, torch_device, db=db, cache_keys=keys)
    if verify:
        for modality in ("image", "text"):
            _check_encoder(models, modality, sides[modality][0])
        models.max_score_deviation = _check_scores(models)
    return models


def _cached_side(db, key: str, data: EvalSetData, modality: str, tokens: bool,
                 run_id: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    frame, _, _ = side_items(data, modality)
    try:
        vectors, token_list = read_cache(db, key, list(frame["sha256"]), tokens=tokens)
    except RuntimeError as exc:
        raise RestoreError(f"Run {run_id}'s {modality} embeddings are no longer in the cache ({exc}); re-run its "
                           "config to rebuild them.") from exc
    if token_list is None:
        return vectors, None, None
    toks, mask = pad_tokens(token_list)
    return vectors, toks, mask


def _check_encoder(models: RunModels, modality: str, cached: np.ndarray) -> None:
    """A refit encoder must reproduce the run's cached vectors (fitting is deterministic on one device)."""
    encoder = models.image_encoder if modality == "image" else models.text_encoder
    if not encoder.requires_fit:
        return
    frame, sources, _ = side_items(models.data, modality)
    rows = np.linspace(0, len(frame) - 1, min(N_VERIFY_ITEMS, len(frame))).astype(int)
    if modality == "image":
        fresh = models.encode_images([models.load_image(i) for i in frame["image_id"].iloc[rows]]).vectors
    else:
        fresh = models.encode_texts(list(sources.iloc[rows])).vectors
    deviation = float(np.abs(fresh - cached[rows]).max()) if len(rows) else 0.0
    if deviation > VECTOR_TOLERANCE:
        raise RestoreError(
            f"The refit {encoder.name} encoder differs from run {models.run_id}'s cached embeddings by up to "
            f"{deviation:.2e} (tolerance {VECTOR_TOLERANCE:g}): the run was probably trained on another device or "
            "library version. Restore it where it ran (device=...), or re-run its config here.")


def _check_scores(models: RunModels) -> float:
    """The restored head must reproduce the run's stored test scores; returns the largest deviation."""
    with store.connect(models.db) as con:
        stored = store.query_frame(con, "SELECT pair_id, score FROM scores WHERE run_id = ? AND split = 'test' "
                                   "ORDER BY pair_id", [models.run_id])
    if stored.empty:
        return 0.0
    restored = models.score_pair_ids(list(stored["pair_id"])).astype(np.float64)
    expected = stored["score"].to_numpy(dtype=np.float64)
    deviation = np.abs(restored - expected)
    allowed = SCORE_TOLERANCE * np.maximum(1.0, np.abs(expected))
    if (deviation > allowed).any():
        raise RestoreError(
            f"The restored {models.head.name} head differs from run {models.run_id}'s stored test scores by up to "
            f"{deviation.max():.2e}: the run was probably trained on another device or library version. Restore "
            "it where it ran (device=...), or re-run its config here.")
    return float(deviation.max())
