"""The artifacts stage of a run: everything evaluation needs that takes a model, computed while the run holds its
models and stored with it, so :mod:`workbench.evaluation` reads stored results only.

- retrieval: per-query ranks and each query's top-k list, t2i and i2t over the test gallery (cosine in the head's
  joint space, or the pair scorer over the whole gallery) -> artifacts ``retrieval/t2i``, ``retrieval/i2t``;
- gallery-size curves from the head's own scores of seeded queries -> ``gallery_curves`` (the score matrix is
  model output too large to keep, so the curve is measured here with the metrics package);
- zero-shot: category prompts encoded by the run's text encoder and ranked by its head -> ``zeroshot``;
- the joint space: the head's embeddings, or for a head that scores pairs a CCA view fitted on the encoder outputs
  -> table ``run_embeddings`` and its geometry -> ``diagnostics``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from workbench import store
from workbench.config import RunConfig
from workbench.data.model import EvalSetData
from workbench.data.vocab import ATTRIBUTES, text_tags
from workbench.evaluation.results import put_artifact
from workbench.metrics import (
    diagnostics,
    retrieval_metrics,
    retrieval_metrics_from_embeddings,
    zeroshot_ranks,
)
from workbench.metrics.gallery import DISTRACTOR_MODES, gallery_size_curve
from workbench.models import Encoder
from workbench.models.fusion import FusionData, FusionHead, create_fusion_head
from workbench.run.fitting import pair_sets

KS = (1, 5, 10)
TIES = "pessimistic"  # retrieval and zero-shot: an item tied with the true one ranks above it
TOP_K = 10  # gallery items kept per retrieval query, so failure views show the run's own ranking
MAX_FULL_GALLERY = 4_000_000  # text × image pairs a pair-scoring head scores exhaustively
CURVE_QUERIES = 500  # seeded text queries behind the gallery-size curves
GALLERY_SIZES = (10, 25, 50, 100, 250, 500, 1000, 2500)
ZEROSHOT_TEMPLATES = {"en": "a photo of a {}", "zh": "一张{}的商品图片"}


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _gallery(data) -> tuple[np.ndarray, np.ndarray, str]:
    """Test images and test texts that belong to a product (attribute-swap texts belong to none)."""
    test_pairs = data.pairs[data.pairs["split"] == "test"]
    image_ids = set(test_pairs["image_id"])
    text_ids = set(test_pairs.loc[test_pairs["label"] == 1, "text_id"])
    image_idx = np.flatnonzero(data.images["image_id"].isin(image_ids).to_numpy())
    text_idx = np.flatnonzero(data.texts["text_id"].isin(text_ids).to_numpy()
                              & data.texts["product_id"].notna().to_numpy())
    return image_idx, text_idx, f"test split: {len(image_idx)} images × {len(text_idx)} texts"


def _retrieval(head, joint, fusion_data, image_idx, text_idx, seed: int) -> tuple[dict, str, tuple]:
    """Per-query t2i and i2t results: cosine in ``joint`` (the head's embeddings) when it has them, else the
    pair scorer scores the whole gallery.

    Also returns (t2i scores of up to ``CURVE_QUERIES`` seeded queries, their text indices, the image indices)
    for the gallery-size curves.
    """
    img_groups = fusion_data.image_product[image_idx]
    txt_groups = fusion_data.text_product[text_idx]
    if joint is not None:
        img, txt = _normalise(joint[0][image_idx]), _normalise(joint[1][text_idx])
        t2i = retrieval_metrics_from_embeddings(txt, img, txt_groups, img_groups, ks=KS, ties=TIES, top_k=TOP_K)
        i2t = retrieval_metrics_from_embeddings(img, txt, img_groups, txt_groups, ks=KS, ties=TIES, top_k=TOP_K)
        method = "cosine in the joint space over the full test gallery"
        keep = np.random.default_rng(seed).permutation(len(text_idx))[:CURVE_QUERIES]
        curve = (txt[keep] @ img.T, text_idx[keep], image_idx)
    else:
        if len(image_idx) * len(text_idx) > MAX_FULL_GALLERY:
            rng = np.random.default_rng(seed)
            products = np.unique(img_groups)
            keep = rng.choice(products, size=max(2, int(len(products) * np.sqrt(
                MAX_FULL_GALLERY / (len(image_idx) * len(text_idx))))), replace=False)
            image_idx = image_idx[np.isin(img_groups, keep)]
            text_idx = text_idx[np.isin(txt_groups, keep)]
            img_groups, txt_groups = fusion_data.image_product[image_idx], fusion_data.text_product[text_idx]
            method = (f"pair scorer over a seeded sample of {len(keep)} of {len(products)} test products "
                      f"({len(text_idx)} texts × {len(image_idx)} images), exhaustively scored")
        else:
            method = "pair scorer, exhaustively scored over the full test gallery"
        scores = head.score_matrix(fusion_data, image_idx, text_idx)
        t2i = retrieval_metrics(scores, txt_groups, img_groups, ks=KS, ties=TIES, top_k=TOP_K)
        i2t = retrieval_metrics(scores.T, img_groups, txt_groups, ks=KS, ties=TIES, top_k=TOP_K)
        keep = np.random.default_rng(seed).permutation(len(text_idx))[:CURVE_QUERIES]
        curve = (scores[keep], text_idx[keep], image_idx)
    out = {}
    for direction, result, ids, gallery_ids in (("t2i", t2i, text_idx, image_idx), ("i2t", i2t, image_idx, text_idx)):
        frame = {k: np.asarray(v, dtype=float) for k, v in result.per_query.items()}
        frame["item_idx"] = np.asarray(ids)
        frame["group"] = (txt_groups if direction == "t2i" else img_groups).astype(str)
        top = {"k": TOP_K, "item_idx": np.asarray(gallery_ids)[result.top_k_index], "score": result.top_k_score}
        out[direction] = {"per_query": frame, "ties": result.ties, "top_k": top,
                          "n_without_positive": result.n_queries_without_positive}
    return out, method, curve


def _gallery_curves(fusion_data, scores: np.ndarray, text_idx, image_idx, *, seed: int) -> dict:
    """t2i success@k / MRR as the gallery grows, with random and with same-category distractors."""
    args = (scores, fusion_data.text_product[text_idx], fusion_data.image_product[image_idx])
    category_of = dict(zip(fusion_data.image_product, fusion_data.image_category, strict=True))
    text_cats = np.array([category_of.get(p, -1) for p in fusion_data.text_product[text_idx]])
    return {
        mode: {str(size): row for size, row in gallery_size_curve(
            *args, text_cats, fusion_data.image_category[image_idx], sizes=GALLERY_SIZES, mode=mode, seed=seed,
        ).items()}
        for mode in DISTRACTOR_MODES
    }


def _zeroshot(head, fusion_data, data, image_idx, encoder, device) -> dict | None:
    """Category prompts (English and Chinese), encoded by the run's text encoder and scored by its head."""
    categories = sorted(c for c in data.products["category"].dropna().unique())
    if len(categories) < 2 or not len(image_idx) or head.uses_tokens or encoder.requires_fit:
        return None  # token heads need prompt tokens; fitted towers are not re-fitted when served from the cache
    words = {c: ATTRIBUTES["category"].get(c, {"en": [c], "zh": [c]}) for c in categories}
    results = {}
    category_of = dict(zip(data.products["product_id"], data.products["category"], strict=True))
    truth = np.array([categories.index(category_of[p]) if category_of.get(p) in categories else -1
                      for p in fusion_data.image_product[image_idx]])
    keep = truth >= 0
    if not keep.any():
        return None
    for lang, template in ZEROSHOT_TEMPLATES.items():
        prompts = [template.format((words[c].get(lang) or [c])[0]) for c in categories]
        vecs = encoder.encode(prompts, device=device)
        prompt_data = FusionData(
            image_vecs=fusion_data.image_vecs[image_idx], text_vecs=vecs.astype(np.float32),
            image_tokens=None, image_mask=None, text_tokens=None, text_mask=None,
            image_tags=fusion_data.image_tags[image_idx],
            text_tags=np.stack([text_tags(p, lang) for p in prompts]).astype(np.float32),
            image_product=fusion_data.image_product[image_idx], text_product=np.array(categories, dtype=object),
            image_category=fusion_data.image_category[image_idx],
        )
        scores = head.score_matrix(prompt_data, np.arange(len(image_idx)), np.arange(len(categories))).T
        results[lang] = {"rank": zeroshot_ranks(scores[keep], truth[keep], ties=TIES).tolist(),
                         "truth": truth[keep].tolist(), "prompts": prompts,
                         "group": fusion_data.image_product[image_idx][keep].astype(str).tolist()}
    return {"categories": categories, "ties": TIES, "by_language": results}


def store_artifacts(run_id: str, *, db, data: EvalSetData, fusion_data: FusionData, head: FusionHead,
                    config: RunConfig, text_encoder: Encoder, device: torch.device) -> None:
    """Compute and store (replacing earlier ones) the run's retrieval, gallery-curve, zero-shot and joint-space
    artifacts from its fitted head and text encoder."""
    image_idx, text_idx, gallery_desc = _gallery(data)
    joint = head.embed(fusion_data)  # None for heads that score pairs
    retrieval, method, curve = _retrieval(head, joint, fusion_data, image_idx, text_idx, config.seed)
    curves = _gallery_curves(fusion_data, *curve, seed=config.seed)
    zeroshot = _zeroshot(head, fusion_data, data, image_idx, text_encoder, device)
    space = "joint space of the fusion head"
    if joint is None:
        joint = _cca_view(data, fusion_data, seed=config.seed, device=device)
        space = "CCA view of the encoder outputs (this head scores pairs and has no joint space)"
    img, txt = _normalise(joint[0][image_idx]), _normalise(joint[1][text_idx])
    embeddings = pd.concat([
        pd.DataFrame({"run_id": run_id, "modality": modality, "item_id": ids, "vector": list(vecs.astype(np.float32))})
        for modality, ids, vecs in (("image", data.images["image_id"].iloc[image_idx].to_numpy(), img),
                                    ("text", data.texts["text_id"].iloc[text_idx].to_numpy(), txt))
    ], ignore_index=True)
    diag = _diagnostics(img, txt, fusion_data.image_product[image_idx], fusion_data.text_product[text_idx])
    with store.connect(db) as con, store.transaction(con):
        con.execute("DELETE FROM run_embeddings WHERE run_id = ?", [run_id])
        con.register("_emb", embeddings)
        con.execute("INSERT INTO run_embeddings SELECT run_id, modality, item_id, vector::FLOAT[] FROM _emb")
        for direction in ("t2i", "i2t"):
            payload = retrieval[direction]
            payload["method"] = method
            payload["gallery"] = gallery_desc
            put_artifact(con, run_id, f"retrieval/{direction}", payload)
        if zeroshot:
            put_artifact(con, run_id, "zeroshot", zeroshot)
        put_artifact(con, run_id, "gallery_curves", curves)
        put_artifact(con, run_id, "diagnostics", {**diag, "space": space})


def _cca_view(data: EvalSetData, fusion_data: FusionData, *, seed: int,
              device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """A joint space for a head that scores pairs: CCA fitted on the train pairs' encoder outputs (for the
    embedding views and the diagnostics; its metrics come from the head's own scores)."""
    view = create_fusion_head("cca", n_components=min(16, fusion_data.image_vecs.shape[1],
                                                     fusion_data.text_vecs.shape[1]))
    splits = pair_sets(data)
    view.fit(fusion_data, splits["train"], splits["val"], seed=seed, device=device)
    return view.embed(fusion_data)


def _diagnostics(img: np.ndarray, txt: np.ndarray, img_groups, txt_groups) -> dict:
    """Joint-space geometry; items whose vector is all zeros (e.g. no known TF-IDF term) are left out and counted."""
    keep_i, keep_t = np.linalg.norm(img, axis=1) > 0, np.linalg.norm(txt, axis=1) > 0
    img, txt, img_groups, txt_groups = img[keep_i], txt[keep_t], img_groups[keep_i], txt_groups[keep_t]
    first_text = {}
    for i, g in enumerate(txt_groups):
        first_text.setdefault(g, i)
    matched = [(i, first_text[g]) for i, g in enumerate(img_groups) if g in first_text]
    out = {"zero_vectors_left_out": int((~keep_i).sum() + (~keep_t).sum())}
    if not len(img) or not len(txt):
        return out
    out |= {"diag/modality_gap": diagnostics.modality_gap(img, txt),
           "diag/uniformity": diagnostics.uniformity(np.concatenate([img, txt]))}
    if matched:
        ii, tt = np.array(matched).T
        out["diag/alignment"] = diagnostics.alignment(img[ii], txt[tt])
    if len(img) > 10 and len(txt) > 10:
        out["diag/hubness"] = diagnostics.hubness(txt, img, k=min(10, len(img) - 1))
    return out
