"""Turn a run's stored per-item results into metrics (long format in DuckDB), and compare runs.

At the end of a run, :func:`evaluate_run` stores per-query retrieval results, zero-shot results and joint-space
embeddings (these need the models), then :func:`compute_metrics` derives every aggregate from the stored per-item
data. ``compute_metrics`` can be re-run for old runs (e.g. excluding pairs marked as label errors).
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd

from workbench import store
from workbench.config import RunConfig
from workbench.data.grouping import content_groups
from workbench.data.model import EvalSetData
from workbench.data.vocab import ATTRIBUTES, text_tags
from workbench.metrics import (
    HEADLINE_METRICS,
    bootstrap_ci,
    bootstrap_pair_metrics,
    choose_threshold,
    delong_test,
    diagnostics,
    holm,
    mcnemar,
    pair_metrics,
    paired_bootstrap,
    pr_curve_points,
    reliability_curve,
    retrieval_metrics,
    retrieval_metrics_from_embeddings,
    roc_curve_points,
    zeroshot_metrics_from_ranks,
    zeroshot_ranks,
)
from workbench.metrics.calibration import (
    CALIBRATION_METHODS,
    Calibrator,
    bootstrap_calibration_metrics,
    calibrator_from_dict,
    fit_calibrator,
)
from workbench.metrics.classification import UNDEFINED_POLICIES as PAIR_POLICIES
from workbench.metrics.gallery import DISTRACTOR_MODES, gallery_size_curve
from workbench.metrics.retrieval import UNDEFINED_POLICIES as RETRIEVAL_POLICIES
from workbench.metrics.zeroshot import UNDEFINED_POLICIES as ZEROSHOT_POLICIES

KS = (1, 5, 10)
TIES = "pessimistic"  # retrieval and zero-shot: an item tied with the true one ranks above it
TOP_K = 10  # gallery items kept per retrieval query, so failure views show the run's own ranking
N_RESAMPLES = 1000
MAX_FULL_GALLERY = 4_000_000  # text × image pairs a pair-scoring head scores exhaustively
CURVE_QUERIES = 500  # seeded text queries behind the gallery-size curves
GALLERY_SIZES = (10, 25, 50, 100, 250, 500, 1000, 2500)
SLICE_METRICS = ("accuracy", "f1", "roc_auc", "pr_auc")
# The one declaration of "too few pairs": a slice with fewer test positives or negatives than these is shown
# greyed and never ranked among the worst (its metrics swing by chance; n ≈ 85 slices were ranked worst).
MIN_SLICE_POSITIVES = 30
MIN_SLICE_NEGATIVES = 30
CALIBRATION_BINS = 10  # equal-width probability bins of pair/ece and the reliability diagram
ZEROSHOT_TEMPLATES = {"en": "a photo of a {}", "zh": "一张{}的商品图片"}


# ------------------------------------------------------------------------------------------- stored artifacts
def _put_artifact(con, run_id: str, kind: str, payload: dict) -> None:
    con.execute("DELETE FROM run_artifacts WHERE run_id = ? AND kind = ?", [run_id, kind])
    con.execute("INSERT INTO run_artifacts VALUES (?, ?, ?)", [run_id, kind, json.dumps(payload, default=_json)])


def _json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def get_artifact(run_id: str, kind: str, *, db=None) -> dict | None:
    with store.connect(db) as con:
        row = con.execute("SELECT payload FROM run_artifacts WHERE run_id = ? AND kind = ?",
                          [run_id, kind]).fetchone()
    return json.loads(row[0]) if row else None


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
    from workbench.models.fusion import FusionData

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


def evaluate_run(run_id: str, *, db, data, fusion_data, head, config: RunConfig, text_encoder, device) -> None:
    """Store what metrics need from the models (retrieval, zero-shot, embeddings), then compute metrics."""
    image_idx, text_idx, gallery_desc = _gallery(data)
    joint = head.embed(fusion_data)  # None for heads that score pairs
    retrieval, method, curve = _retrieval(head, joint, fusion_data, image_idx, text_idx, config.seed)
    curves = _gallery_curves(fusion_data, *curve, seed=config.seed)
    zeroshot = _zeroshot(head, fusion_data, data, image_idx, text_encoder, device)
    space = "joint space of the fusion head"
    if joint is None:
        from workbench.models.fusion import create_fusion_head
        from workbench.runner import pair_sets

        view = create_fusion_head("cca", n_components=min(16, fusion_data.image_vecs.shape[1],
                                                         fusion_data.text_vecs.shape[1]))
        splits = pair_sets(data)
        view.fit(fusion_data, splits["train"], splits["val"], seed=config.seed, device=device)
        joint = view.embed(fusion_data)
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
            _put_artifact(con, run_id, f"retrieval/{direction}", payload)
        if zeroshot:
            _put_artifact(con, run_id, "zeroshot", zeroshot)
        _put_artifact(con, run_id, "gallery_curves", curves)
        _put_artifact(con, run_id, "diagnostics", {**diag, "space": space})
    compute_metrics(run_id, db=db, threshold_options=config.threshold, seed=config.seed)


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


# ----------------------------------------------------------------------------------------------- metrics
def scored_pairs(con, run_id: str, *, exclude_label_errors: bool = False) -> pd.DataFrame:
    """A run's per-pair scores joined with the pair, its image's product and category, and the text."""
    sql = """
        SELECT s.pair_id, s.split, s.score, p.label, p.pair_kind, p.swapped_attribute, p.image_id, p.text_id,
               i.product_id AS product_id, pr.category, t.language, t.text, i.path AS image_path
        FROM scores s JOIN runs r USING (run_id)
        JOIN pairs p ON p.eval_set = r.eval_set AND p.pair_id = s.pair_id
        JOIN images i ON i.eval_set = r.eval_set AND i.image_id = p.image_id
        LEFT JOIN products pr ON pr.eval_set = r.eval_set AND pr.product_id = i.product_id
        JOIN texts t ON t.eval_set = r.eval_set AND t.text_id = p.text_id
        WHERE s.run_id = ?
    """
    if exclude_label_errors:
        sql += " AND s.pair_id NOT IN (SELECT pair_id FROM label_errors le WHERE le.eval_set = r.eval_set)"
    return store.query_frame(con, sql + " ORDER BY s.pair_id", [run_id])


def _thresholds(val: pd.DataFrame, options: dict) -> tuple[float, dict[str, float]]:
    kwargs = {k: options[k] for k in ("target", "cost_fp", "cost_fn") if k in options}
    policy = options.get("policy", "max_f1")
    global_t = choose_threshold(val["label"].to_numpy(), val["score"].to_numpy(), policy=policy, **kwargs)
    per_category: dict[str, float] = {}
    if options.get("per_category"):
        for category, group in val.groupby("category"):
            if group["label"].nunique() == 2:
                per_category[str(category)] = choose_threshold(group["label"].to_numpy(), group["score"].to_numpy(),
                                                                policy=policy, **kwargs)
    return float(global_t), per_category


def apply_thresholds(frame: pd.DataFrame, global_t: float, per_category: dict[str, float]) -> np.ndarray:
    thresholds = frame["category"].astype(str).map(per_category).fillna(global_t).to_numpy(dtype=float)
    return thresholds


def compute_metrics(run_id: str, *, db=None, threshold_options: dict | None = None, seed: int | None = None,
                    exclude_label_errors: bool = False, n_resamples: int = N_RESAMPLES,
                    calibration: str | None = None) -> pd.DataFrame:
    """(Re)compute every metric of a run from its stored per-item results; store and return them (long format).

    Thresholds and the score → probability calibrator (``calibration``: "platt" or "isotonic", else the
    config's ``threshold.calibration``, default "platt") are fitted on val and applied to test; ECE, Brier, log
    loss and the reliability diagram are measured on the calibrated test probabilities. CIs: percentile
    bootstrap resampling products, seeded with the run's seed unless ``seed`` is given; slice metrics too.
    """
    with store.connect(db) as con:
        run = con.execute("SELECT config FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if run is None:
            raise KeyError(f"Run {run_id!r} not found.")
        stored_config = json.loads(run[0])
        options = threshold_options or stored_config.get("threshold", {"policy": "max_f1"})
        seed = stored_config.get("seed", 0) if seed is None else seed  # the run's own seed: same resamples
        pairs = scored_pairs(con, run_id, exclude_label_errors=exclude_label_errors)
        artifacts = dict(con.execute("SELECT kind, payload FROM run_artifacts WHERE run_id = ?", [run_id]).fetchall())
        attributes = store.query_frame(
            con, "SELECT a.product_id, a.name, a.value FROM attributes a JOIN runs r ON r.eval_set = a.eval_set "
            "WHERE r.run_id = ?", [run_id])
        n_excluded = con.execute(
            "SELECT count(*) FROM label_errors le JOIN runs r ON r.eval_set = le.eval_set WHERE r.run_id = ?",
            [run_id]).fetchone()[0] if exclude_label_errors else 0
    val, test = pairs[pairs["split"] == "val"], pairs[pairs["split"] == "test"]
    if val["label"].nunique() < 2 or test["label"].nunique() < 2:
        raise ValueError("Both val and test splits need positive and negative pairs to compute pair metrics.")
    global_t, per_category = _thresholds(val, options)
    method = calibration or options.get("calibration", "platt")
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration={method!r} is not supported; allowed: {list(CALIBRATION_METHODS)}")
    calibrator = fit_calibrator(val["label"].to_numpy(), val["score"].to_numpy(), method=method)
    t_test = apply_thresholds(test, global_t, per_category)
    y, s = test["label"].to_numpy(), test["score"].to_numpy()
    groups = test["product_id"].astype(str).to_numpy()
    rows: list[tuple] = []

    def add(name: str, value, low=None, high=None, *, kind="all", slice_value="all", n=None) -> None:
        rows.append((run_id, name, kind, str(slice_value), _f(value), _f(low), _f(high), n))

    cis = bootstrap_pair_metrics(y, s, threshold=global_t, groups=groups, n_resamples=n_resamples, seed=seed)
    shifted = s - t_test  # per-category thresholds become one threshold at 0
    if per_category:
        by_threshold = bootstrap_pair_metrics(y, shifted, threshold=0.0, groups=groups, n_resamples=n_resamples,
                                              seed=seed)
        cis.update({k: v for k, v in by_threshold.items() if k not in ("roc_auc", "pr_auc")})
    point = pair_metrics(y, shifted, threshold=0.0)
    point.update({k: v for k, v in pair_metrics(y, s, threshold=global_t).items() if k in ("roc_auc", "pr_auc")})
    for name, value in point.items():
        if name in ("brier", "log_loss"):
            continue  # probability metrics are measured on the calibrated probabilities, below
        low, high = cis[name][1:] if name in cis else (None, None)
        add(f"pair/{name}", value, low, high, n=len(y))
    probs = calibrator.predict(s)
    for name, (value, low, high) in bootstrap_calibration_metrics(
            y, probs, groups=groups, n_bins=CALIBRATION_BINS, n_resamples=n_resamples, seed=seed).items():
        add(f"pair/{name}", value, low, high, n=len(y))
    add("pair/threshold", global_t, n=len(val))

    for name, values in attributes.groupby("name"):  # imported metadata (attr.* columns) as slices
        test = test.assign(**{f"attr.{name}": test["product_id"].map(dict(zip(values["product_id"], values["value"],
                                                                              strict=True)))})
    slice_columns = ["category", "pair_kind", "language", "swapped_attribute",
                     *(f"attr.{n}" for n in sorted(attributes["name"].unique()))]
    counts = [{"slice_kind": "all", "slice_value": "all", "n_pos": int(y.sum()), "n_neg": int(len(y) - y.sum())}]
    for kind in slice_columns:
        for value, group in test.groupby(kind, dropna=True):
            if kind in ("pair_kind", "swapped_attribute") and value != "positive":
                group = pd.concat([test[test["label"] == 1], group])  # positives vs this kind of negative
            yy, ss = group["label"].to_numpy(), group["score"].to_numpy() - apply_thresholds(group, global_t,
                                                                                             per_category)
            n_pos = int(yy.sum())
            counts.append({"slice_kind": kind, "slice_value": str(value), "n_pos": n_pos, "n_neg": len(yy) - n_pos})
            boot = bootstrap_pair_metrics(yy, ss, threshold=0.0, groups=group["product_id"].astype(str).to_numpy(),
                                          n_resamples=n_resamples, seed=seed)
            for name in SLICE_METRICS if 0 < n_pos < len(yy) else ("accuracy",):  # one class: accuracy only
                add(f"pair/{name}", *boot[name], kind=kind, slice_value=value, n=len(group))

    for direction in ("t2i", "i2t"):
        payload = json.loads(artifacts[f"retrieval/{direction}"]) if f"retrieval/{direction}" in artifacts else None
        if not payload:
            continue
        per_query = {k: np.asarray(v, dtype=float) for k, v in payload["per_query"].items()
                     if k not in ("group", "item_idx")}
        qgroups = np.asarray(payload["per_query"]["group"])
        has_pos = per_query["n_positives"] > 0
        for key, values in per_query.items():
            if key in ("n_positives", "first_rank"):
                continue
            name = {"reciprocal_rank": "mrr", "ap": "map"}.get(key, key)
            value, low, high = bootstrap_ci(np.mean, (values[has_pos],), groups=qgroups[has_pos],
                                            n_resamples=n_resamples, seed=seed)
            add(f"{direction}/{name}", value, low, high, n=int(has_pos.sum()))
        ranks = per_query["first_rank"][has_pos]
        add(f"{direction}/median_rank", float(np.median(ranks)), n=len(ranks))
        add(f"{direction}/mean_rank", float(np.mean(ranks)), n=len(ranks))
        add(f"{direction}/n_queries_without_positive", int(payload["n_without_positive"]), n=len(has_pos))

    if "zeroshot" in artifacts:
        zs = json.loads(artifacts["zeroshot"])
        for lang, res in zs["by_language"].items():
            rank, truth = np.asarray(res["rank"], dtype=float), np.asarray(res["truth"], dtype=np.int64)
            kind, value = ("all", "all") if lang == "en" else ("language", lang)
            for k in (1, 5):
                v, lo, hi = bootstrap_ci(lambda r, t, k=k: zeroshot_metrics_from_ranks(r, t, ks=(k,))[f"acc@{k}"],
                                         (rank, truth), groups=res.get("group"), n_resamples=n_resamples, seed=seed)
                add(f"zeroshot/acc@{k}", v, lo, hi, kind=kind, slice_value=value, n=len(rank))
            add("zeroshot/mean_per_class_recall",
                zeroshot_metrics_from_ranks(rank, truth, ks=(1,))["mean_per_class_recall"], kind=kind,
                slice_value=value, n=len(rank))
    if "gallery_curves" in artifacts:
        for mode, rows_by_size in json.loads(artifacts["gallery_curves"]).items():
            for size, row in rows_by_size.items():
                for key in ("success@1", "success@5", "mrr"):
                    add(f"t2i/{key}", row[key], kind=f"gallery_{mode}", slice_value=size, n=row["n_queries"])
    if "diagnostics" in artifacts:
        for name, value in json.loads(artifacts["diagnostics"]).items():
            if name.startswith("diag/"):
                add(name, value)

    frame = pd.DataFrame(rows, columns=["run_id", "name", "slice_kind", "slice_value", "value", "ci_low", "ci_high",
                                        "n"])
    curves = {
        "roc": roc_curve_points(y, s), "pr": pr_curve_points(y, s),
        "reliability": reliability_curve(y, probs, n_bins=CALIBRATION_BINS),
        "calibration": {**calibrator.to_dict(), "fitted_on": "val", "n_val": len(val),
                        "n_val_positives": int(val["label"].sum())},
        "threshold": global_t, "per_category_thresholds": per_category, "threshold_options": options,
        "policies": {**PAIR_POLICIES, **RETRIEVAL_POLICIES, **ZEROSHOT_POLICIES,
                     "bootstrap": f"{n_resamples} percentile-bootstrap resamples of products, seed {seed}",
                     "calibration": f"{method} calibrator fitted on the {len(val)} val pairs maps scores to match "
                     f"probabilities; pair/ece ({CALIBRATION_BINS} equal-width bins), pair/brier, pair/log_loss and "
                     "the reliability diagram are measured on test",
                     "slices": "slice metrics carry their positives and negatives (n_pos, n_neg) and product-"
                     f"bootstrap CIs; fewer than {MIN_SLICE_POSITIVES} positives or {MIN_SLICE_NEGATIVES} negatives "
                     "is flagged 'too few pairs' (greyed, never ranked among the worst)",
                     "label_errors": f"{n_excluded} pairs marked as label errors excluded" if exclude_label_errors
                     else "pairs marked as label errors are included"},
        "computed_at": datetime.now().isoformat(timespec="seconds"),
    }
    with store.connect(db) as con, store.transaction(con):
        con.execute("DELETE FROM metrics WHERE run_id = ?", [run_id])
        store.insert_frame(con, "metrics", frame)
        _put_artifact(con, run_id, "curves", curves)
        _put_artifact(con, run_id, "slice_counts", {"rows": counts})
    with store.connect(db) as con:  # outside the transaction: the run's heartbeat may update the same row
        store.execute_retrying(con, "UPDATE runs SET threshold = ? WHERE run_id = ?", [global_t, run_id])
    return frame


def _f(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def load_metrics(run_id: str, *, db=None, slices: bool = False) -> pd.DataFrame:
    """A run's metrics: headline (slice 'all') by default, or every slice.

    Columns: name, slice_kind, slice_value, value, ci_low, ci_high, n (pairs), and for pair metrics n_pos and
    n_neg (test positives and negatives behind the value; <NA> for other families and for runs computed before
    counts were stored) and too_few (fewer than ``MIN_SLICE_POSITIVES`` positives or ``MIN_SLICE_NEGATIVES``
    negatives).
    """
    with store.connect(db) as con:
        if not con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]:
            raise KeyError(f"Run {run_id!r} not found. See `python -m workbench runs`.")
        sql = "SELECT name, slice_kind, slice_value, value, ci_low, ci_high, n FROM metrics WHERE run_id = ?"
        if not slices:
            sql += " AND slice_kind = 'all'"
        frame = store.query_frame(con, sql + " ORDER BY slice_kind, slice_value, name", [run_id])
        stored = con.execute("SELECT payload FROM run_artifacts WHERE run_id = ? AND kind = 'slice_counts'",
                             [run_id]).fetchone()
    counts = pd.DataFrame(json.loads(stored[0])["rows"] if stored else [],
                          columns=["slice_kind", "slice_value", "n_pos", "n_neg"])
    out = frame.merge(counts.astype({"n_pos": "Int64", "n_neg": "Int64"}), on=["slice_kind", "slice_value"],
                      how="left")
    is_pair = out["name"].str.startswith("pair/") & (out["name"] != "pair/threshold")
    out.loc[~is_pair, ["n_pos", "n_neg"]] = pd.NA
    small = (out["n_pos"] < MIN_SLICE_POSITIVES) | (out["n_neg"] < MIN_SLICE_NEGATIVES)
    out["too_few"] = small.fillna(False).astype(bool)
    return out


def load_calibrator(run_id: str, *, db=None) -> Calibrator | None:
    """The run's val-fitted score → probability calibrator (None for metrics computed before calibration)."""
    stored = (get_artifact(run_id, "curves", db=db) or {}).get("calibration")
    return calibrator_from_dict(stored) if stored else None


# ------------------------------------------------------------------------------------------------- compare
COMPARE_PAIR_METRICS = ("pair/accuracy", "pair/f1", "pair/roc_auc", "pair/pr_auc")


def _test_frame(con, run_id: str) -> pd.DataFrame:
    return scored_pairs(con, run_id).query("split == 'test'").set_index("pair_id")


def _pair_clusters(con, eval_set: str, product_ids: pd.Series) -> np.ndarray:
    """Cluster of every pair for the paired tests: the content group of its image's product.

    Products sharing image bytes or a normalised title (:func:`workbench.data.grouping.content_groups`) are one
    unit, so reseller copies count once; a product outside every group is its own cluster.
    """
    def read(sql: str) -> pd.DataFrame:
        return store.query_frame(con, sql, [eval_set])

    data = EvalSetData(products=read("SELECT product_id, category FROM products WHERE eval_set = ?"),
                       images=read("SELECT product_id, sha256 FROM images WHERE eval_set = ?"),
                       texts=read("SELECT product_id, text FROM texts WHERE eval_set = ?"))
    ids = product_ids.astype(str)
    return ids.map(content_groups(data)).fillna(ids).to_numpy()


def compare_runs(run_ids: list[str], *, db=None, baseline: str | None = None, n_resamples: int = N_RESAMPLES,
                 seed: int = 0) -> dict:
    """Leaderboard with CIs plus paired tests of each run against the baseline on the same test pairs.

    The unit of every test is the content group of the image's product (``n_clusters`` of them; pairs of one
    product are correlated): paired bootstrap resampling those clusters for F1/PR-AUC, clustered McNemar
    (Durkalski et al. 2003) for accuracy at each run's own val-chosen threshold, clustered DeLong (Obuchowski
    1997) for ROC-AUC; p-values Holm-corrected across the runs compared to the baseline.
    """
    if len(run_ids) < 1:
        raise ValueError("compare needs at least one run id")
    baseline = baseline or run_ids[0]
    if baseline not in run_ids:
        run_ids = [baseline, *run_ids]
    with store.connect(db) as con:
        info = store.query_frame(
            con, "SELECT run_id, config_name, eval_set, threshold, status FROM runs WHERE list_contains(?, run_id)",
            [run_ids]).set_index("run_id")
        missing = [r for r in run_ids if r not in info.index]
        if missing:
            raise KeyError(f"Run(s) not found: {missing}")
        if info["eval_set"].nunique() > 1:
            raise ValueError(f"Runs are on different eval sets {sorted(info['eval_set'].unique())}; "
                             "paired comparison needs the same pairs.")
        frames = {r: _test_frame(con, r) for r in run_ids}
        clusters = _pair_clusters(con, str(info["eval_set"].iloc[0]), frames[baseline]["product_id"])
    n_clusters = int(np.unique(clusters).shape[0])
    metrics = {r: load_metrics(r, db=db).set_index("name") for r in run_ids}
    names = [n for n in _leaderboard_names() if all(n in metrics[r].index for r in run_ids)]
    table = []
    for r in run_ids:
        row = {"run_id": r, "config": info.at[r, "config_name"], "baseline": r == baseline}
        for n in names:
            m = metrics[r].loc[n]
            row[n] = _f(m["value"])
            row[f"{n} CI"] = [_f(m["ci_low"]), _f(m["ci_high"])]
        table.append(row)
    base = frames[baseline]
    tests = []
    for r in run_ids:
        if r == baseline:
            continue
        other = frames[r].reindex(base.index)
        y = base["label"].to_numpy()
        sa, sb = other["score"].to_numpy(), base["score"].to_numpy()
        ta, tb = float(info.at[r, "threshold"]), float(info.at[baseline, "threshold"])
        correct_a, correct_b = (sa >= ta) == y, (sb >= tb) == y
        entry = {"run_id": r, "baseline": baseline}
        for name, fn in (("pair/f1", lambda yy, ss, t: pair_metrics(yy, ss, threshold=t)["f1"]),
                         ("pair/pr_auc", lambda yy, ss, t: pair_metrics(yy, ss, threshold=t)["pr_auc"])):
            boot = paired_bootstrap(lambda yy, ss, f=fn: f(yy, ss, 0.0), y, sa - ta, sb - tb, groups=clusters,
                                    n_resamples=n_resamples, seed=seed)
            entry[name] = {"test": "paired bootstrap", **boot, "n_clusters": n_clusters}
        mc = mcnemar(correct_a, correct_b, groups=clusters)
        entry["pair/accuracy"] = {"test": "McNemar", "delta": float(correct_a.mean() - correct_b.mean()), **mc}
        dl = delong_test(y, sa, sb, groups=clusters)
        entry["pair/roc_auc"] = {"test": "DeLong", **dl}
        tests.append(entry)
    for name in ("pair/f1", "pair/pr_auc", "pair/accuracy", "pair/roc_auc"):
        if tests:
            adjusted = holm([t[name]["p_value"] for t in tests])
            for t, p in zip(tests, adjusted, strict=True):
                t[name]["p_holm"] = float(p)
    flips = _flips(frames, info, baseline)
    return {"baseline": baseline, "metrics": names, "table": table, "tests": tests, "flips": flips,
            "n_clusters": n_clusters, "n_test_pairs": int(clusters.shape[0])}


def _flips(frames: dict, info: pd.DataFrame, baseline: str) -> dict:
    base = frames[baseline]
    tb = float(info.at[baseline, "threshold"])
    base_correct = (base["score"] >= tb) == base["label"]
    out = {}
    for r, frame in frames.items():
        if r == baseline:
            continue
        other = frame.reindex(base.index)
        correct = (other["score"] >= float(info.at[r, "threshold"])) == other["label"]
        out[r] = {"right_here_wrong_baseline": base.index[correct & ~base_correct].tolist(),
                  "wrong_here_right_baseline": base.index[~correct & base_correct].tolist()}
    return out


def _leaderboard_names() -> list[str]:
    return list(HEADLINE_METRICS)  # the registry's leaderboard view

