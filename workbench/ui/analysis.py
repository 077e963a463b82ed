"""Streamlit helpers of the analysis pages (Compare, Embedding space, Mismatches).

Cached reads live here (bounded ``st.cache_data``); heavy work is started by buttons, forms or toggles on the
pages. Untrusted text (titles, categories, config names) is shown with ``st.text``, ``st.image(caption=)`` or
markdown-escaped captions, never as HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from workbench import analysis, evaluation, runner
from workbench.data.evalsets import leakage_warning
from workbench.metrics import calibrator_from_dict, get_metric
from workbench.ui.common import escape_markdown, file_mtime, thumbnail
from workbench.viz import figures

PAGE_DEFAULTS: dict[str, Any] = {
    "compare_baseline": None,
    "embed_params": None,  # last computed projection parameters (small dict)
    "mismatch_page": 0,
    "mismatch_message": None,
}
LEADERBOARD_METRICS = ("pair/accuracy", "pair/precision", "pair/recall", "pair/f1", "pair/roc_auc", "pair/pr_auc",
                       "pair/ece", "pair/brier", "t2i/success@1", "t2i/success@5", "t2i/mrr", "i2t/success@1",
                       "i2t/success@5", "i2t/mrr")
CALIBRATION_METRICS = ("pair/ece", "pair/brier", "pair/log_loss")
RETRIEVAL_METRICS = ("success@1", "success@5", "success@10", "precision@5", "mrr", "ndcg@10")
SLICE_KINDS = ("category", "pair_kind", "swapped_attribute", "language")
KIND_LABELS = {"false_positive": "False positives (non-matches scored as matches)",
               "false_negative": "False negatives (matches scored as non-matches)",
               "hardest_negative": "Hardest negatives (highest-scored non-matches)"}


def init_state() -> None:
    """Page-prefixed session defaults of the analysis pages (IDs and small values only)."""
    for key, value in PAGE_DEFAULTS.items():
        st.session_state.setdefault(key, value)


# ------------------------------------------------------------------------------------------------ cached reads
@st.cache_data(ttl=5, max_entries=8, show_spinner=False)
def done_runs(db: str) -> pd.DataFrame:
    """Finished runs, newest first, with a display label."""
    runs = runner.list_runs(db=db)
    runs = runs[runs["status"] == "done"][["run_id", "config", "eval_set", "created_at"]].reset_index(drop=True)
    runs["label"] = [analysis.run_label(r) for r in runs.to_dict("records")]
    return runs


@st.cache_data(ttl=5, max_entries=16, show_spinner=False)
def leakage_warnings(eval_sets: tuple[str, ...], db: str) -> list[str]:
    """Warnings for eval sets imported with content (a product, image or title) in two splits."""
    return [warning for name in eval_sets if (warning := leakage_warning(name, db))]


def leakage_banner(runs: pd.DataFrame, selected: list[str], db: str) -> None:
    """A warning above the comparison for each selected run's eval set that leaks across splits."""
    eval_sets = tuple(sorted(set(runs.loc[runs["run_id"].isin(selected), "eval_set"])))
    for warning in leakage_warnings(eval_sets, db):
        st.warning(escape_markdown(warning), icon="⚠️")


def metrics_version(run_ids: tuple[str, ...], db: str) -> tuple:
    """When each run's metrics were last computed: part of cache keys so a recomputation invalidates them."""
    return tuple((evaluation.get_artifact(r, "curves", db=db) or {}).get("computed_at") for r in run_ids)


@st.cache_data(max_entries=16, show_spinner=False)
def compare(run_ids: tuple[str, ...], baseline: str, db: str, version: tuple) -> dict:
    return evaluation.compare_runs(list(run_ids), db=db, baseline=baseline)


@st.cache_data(max_entries=32, show_spinner=False)
def curves(run_id: str, db: str, version: tuple) -> dict | None:
    return evaluation.get_artifact(run_id, "curves", db=db)


@st.cache_data(max_entries=16, show_spinner=False)
def scored_pairs(run_id: str, split: str, db: str, version: tuple) -> pd.DataFrame:
    return analysis.load_scored_pairs(run_id, db=db, split=split)


@st.cache_data(max_entries=16, show_spinner=False)
def slice_frame(labels: tuple[tuple[str, str], ...], db: str, version: tuple) -> pd.DataFrame:
    return analysis.slice_metrics(dict(labels), db=db)


def show_image(path: str | None, caption: str | None = None, width: int | str = "stretch") -> None:
    image = thumbnail(path, file_mtime(path))
    if image is None:
        st.caption(f"image unavailable: {escape_markdown(Path(path).name) if path else '—'}")
    else:
        st.image(image, caption=caption, width=width)


# ------------------------------------------------------------------------------------------------ run pickers
def run_selection(runs: pd.DataFrame) -> tuple[list[str], str | None]:
    """Multiselect of runs (kept in ``selected_runs`` across pages) and a baseline among them."""
    labels = dict(zip(runs["run_id"], runs["label"], strict=True))
    kept = [r for r in st.session_state["selected_runs"] if r in labels] or list(runs["run_id"][:2])
    selected = st.multiselect("Runs to compare", list(labels), default=kept, format_func=labels.get,
                              key="compare_runs_widget", help="Finished runs on the same eval set.")
    st.session_state["selected_runs"] = list(selected)
    if not selected:
        return [], None
    if st.session_state["compare_baseline"] not in selected:
        st.session_state["compare_baseline"] = selected[0]
    baseline = st.selectbox("Baseline (significance tests are against it)", selected, format_func=labels.get,
                            key="compare_baseline")
    return list(selected), baseline


def pick_run(runs: pd.DataFrame, label: str, key: str) -> str:
    """One run; defaults to the first of ``selected_runs`` if any."""
    ids = list(runs["run_id"])
    labels = dict(zip(runs["run_id"], runs["label"], strict=True))
    if st.session_state.get(key) not in ids:
        preferred = [r for r in st.session_state["selected_runs"] if r in ids]
        st.session_state[key] = preferred[0] if preferred else ids[0]
    return st.selectbox(label, ids, format_func=labels.get, key=key)


# ------------------------------------------------------------------------------------------------ compare page
def _best_mask(frame: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    mask = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for name in metrics:
        values = pd.to_numeric(frame[name], errors="coerce")
        if values.notna().any():
            best = values.max() if get_metric(name).higher_is_better else values.min()
            mask.loc[values == best, name] = "font-weight: bold"
    return mask


def leaderboard(comparison: dict, labels: dict[str, str]) -> None:
    """Metric values with 95% CIs, the best value of each metric in bold (direction from the metric registry)."""
    frame = analysis.leaderboard_frame(comparison, labels)
    metrics = [m for m in LEADERBOARD_METRICS if m in comparison["metrics"]]
    shown = ["run", "baseline"] + [c for m in metrics for c in (m, f"{m} 95% CI")]
    table = frame[shown]
    styler = (table.style.apply(lambda _: _best_mask(table, metrics), axis=None)
              .format({m: "{:.3f}" for m in metrics}, na_rep="—"))
    st.table(styler, hide_index=True)
    if comparison["tests"]:
        st.markdown("**Paired tests against the baseline** (same test pairs; p-values Holm-corrected across runs)")
        st.caption(f"Unit of every paired test: {comparison['n_clusters']} product clusters (content groups) "
                   f"over {comparison['n_test_pairs']} test pairs; pairs of one product are not independent.")
        st.dataframe(analysis.paired_tests_frame(comparison, labels), hide_index=True, width="stretch",
                     column_config={"Δ vs baseline": st.column_config.NumberColumn(format="%.4f")})


def operating_point_panel(run_id: str, db: str, version: tuple, curve: dict | None) -> None:
    """Threshold slider → live precision/recall/F1/confusion; cost sliders → cheapest threshold (chosen on val)."""
    test = scored_pairs(run_id, "test", db, version)
    if test.empty or test["label"].nunique() < 2:
        st.info("This run's test split needs matches and non-matches for an operating point.")
        return
    y, s = test["label"].to_numpy(), test["score"].to_numpy()
    chosen = float((curve or {}).get("threshold", s.mean()))
    lo, hi = float(min(s.min(), chosen)), float(max(s.max(), chosen))
    step = max((hi - lo) / 200, 1e-6)
    left, right = st.columns([2, 1])
    with left:
        threshold = st.slider("Decision threshold (match iff score ≥ threshold)", lo, hi + step, chosen, step=step,
                              format="%.4f", key=f"compare_threshold_{run_id}")
        point = analysis.operating_point(y, s, threshold)
        cols = st.columns(4)
        for col, name in zip(cols, ("precision", "recall", "f1", "accuracy"), strict=True):
            col.metric(name, f"{point[name]:.3f}")
        st.caption(f"Test split, {len(y):,} pairs. The run's own threshold (chosen on val) is {chosen:.4f}."
                   + _probability_note(curve, threshold))
    with right:
        st.plotly_chart(figures.confusion_figure(point), width="stretch", key=f"compare_confusion_{run_id}")
    st.markdown("**Cost of mistakes** — the cheapest threshold on val, applied to test")
    c1, c2 = st.columns(2)
    cost_fp = c1.slider("Cost of a false match (FP)", 0.0, 10.0, 1.0, 0.5, key="compare_cost_fp")
    cost_fn = c2.slider("Cost of a missed match (FN)", 0.0, 10.0, 1.0, 0.5, key="compare_cost_fn")
    val = scored_pairs(run_id, "val", db, version)
    if val["label"].nunique() == 2:
        best = analysis.cost_threshold(val["label"].to_numpy(), val["score"].to_numpy(), cost_fp, cost_fn)
        on_test = analysis.operating_point(y, s, best["threshold"])
        st.write(f"Cheapest threshold: **{best['threshold']:.4f}** (val cost {best['cost']:.1f}). On test: "
                 f"{on_test['fp']} false matches, {on_test['fn']} missed matches, total cost "
                 f"{cost_fp * on_test['fp'] + cost_fn * on_test['fn']:.1f}; precision {on_test['precision']:.3f}, "
                 f"recall {on_test['recall']:.3f}.")
    per_category = (curve or {}).get("per_category_thresholds") or {}
    if per_category:
        st.markdown("**Per-category thresholds** (chosen on val)")
        st.dataframe(pd.DataFrame({"category": list(per_category), "threshold": list(per_category.values())}),
                     hide_index=True)
    else:
        st.caption("This run uses one global threshold (its config did not ask for per-category thresholds).")


def _probability_note(curve: dict | None, threshold: float) -> str:
    """Where the slider sits on the calibrated scale: the val-fitted probability of a pair scoring the threshold."""
    stored = (curve or {}).get("calibration")
    if not stored:
        return " No calibrator stored (metrics computed before calibration)."
    p = float(calibrator_from_dict(stored).predict([threshold])[0])
    return f" A pair scoring exactly the threshold has calibrated match probability {p:.3f} ({stored['method']})."


def _ci(low: Any, high: Any) -> str:
    return "" if pd.isna(low) or pd.isna(high) else f"[{low:.3f}, {high:.3f}]"


def calibration_frame(frame: pd.DataFrame, curve_map: dict[str, dict | None]) -> pd.DataFrame:
    """One row per run (label): calibration method, ECE, Brier and log loss on test with 95% CIs."""
    rows = []
    for label, curve in curve_map.items():
        stored = (curve or {}).get("calibration") or {}
        row: dict[str, Any] = {"run": label, "calibration (fitted on val)": stored.get("method", "none stored")}
        mine = frame[(frame["run"] == label) & (frame["slice_kind"] == "all")].set_index("name")
        for name in CALIBRATION_METRICS:
            present = name in mine.index
            row[name] = float(mine.at[name, "value"]) if present else None
            row[f"{name} 95% CI"] = _ci(mine.at[name, "ci_low"], mine.at[name, "ci_high"]) if present else ""
        rows.append(row)
    return pd.DataFrame(rows)


def calibration_panel(curve_map: dict[str, dict | None], frame: pd.DataFrame) -> None:
    """Reliability diagram of every run's calibrated test probabilities, then ECE/Brier/log loss with CIs."""
    st.plotly_chart(figures.reliability_figure(curve_map), width="stretch", key="compare_reliability")
    table = calibration_frame(frame, curve_map)
    st.dataframe(table, hide_index=True, column_config={n: st.column_config.NumberColumn(format="%.4f")
                                                        for n in CALIBRATION_METRICS})
    st.caption("Scores are mapped to match probabilities by a calibrator fitted on the val split only (Platt "
               "scaling by default, isotonic on request: `[threshold] calibration`); ECE uses 10 equal-width bins. "
               "Lower is better for all three.")


def _slice_rows(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    data = frame[(frame["name"] == metric) & (frame["slice_kind"] != "all")].dropna(subset=["value"])
    if "too_few" not in data:
        data = data.assign(too_few=False, n_pos=pd.NA, n_neg=pd.NA)
    return data.assign(too_few=data["too_few"].fillna(False).astype(bool))


def _slice_view(data: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "run": data["run"], "slice": data["slice_kind"].astype(str) + ": " + data["slice_value"].astype(str),
        "value": data["value"], "95% CI": [_ci(lo, hi) for lo, hi in zip(data["ci_low"], data["ci_high"],
                                                                         strict=True)],
        "positives": data["n_pos"], "negatives": data["n_neg"],
        "note": np.where(data["too_few"], "too few pairs", ""),
    }).reset_index(drop=True)


def worst_slices(frame: pd.DataFrame, metric: str, n: int = 3) -> pd.DataFrame:
    """The ``n`` worst slices of each run for one metric (direction from the registry), with their CIs and
    positives/negatives; slices with too few pairs are never ranked."""
    data = _slice_rows(frame, metric)
    data = data[~data["too_few"]]
    ascending = get_metric(metric).higher_is_better
    ranked = data.sort_values(["value", "slice_kind", "slice_value"], ascending=[ascending, True, True])
    runs = {run: i for i, run in enumerate(dict.fromkeys(frame["run"]))}  # runs in the order selected
    worst = ranked.groupby("run", sort=False).head(n).sort_values("run", key=lambda r: r.map(runs), kind="stable")
    return _slice_view(worst).drop(columns="note")


def slice_panel(frame: pd.DataFrame, metric: str) -> None:
    """Heatmap, worst slices (only slices with enough pairs are ranked) and every slice with its CI and counts."""
    st.plotly_chart(figures.slice_heatmap(frame, metric=metric), width="stretch", key="compare_heatmap")
    minimum = f"{evaluation.MIN_SLICE_POSITIVES} positives and {evaluation.MIN_SLICE_NEGATIVES} negatives"
    st.markdown(f"**Worst slices per run** (ranked among slices with at least {minimum} on test)")
    worst = worst_slices(frame, metric)
    if worst.empty:
        st.caption(f"No slice has at least {minimum}: every slice is too small to rank.")
    else:
        st.dataframe(worst, hide_index=True, column_config={"value": st.column_config.NumberColumn(format="%.3f")})
    st.markdown("**Every slice** (greyed: too few pairs; pair kinds and swapped attributes are all test positives "
                "against that kind of negative)")
    slice_table(frame, metric)


def slice_table(frame: pd.DataFrame, metric: str) -> None:
    """Every slice of one metric per run with CI and counts; slices with too few pairs greyed and labelled."""
    view = _slice_view(_slice_rows(frame, metric).sort_values(["run", "slice_kind", "slice_value"]))
    grey = f"color: #888888; background-color: {figures.TOO_FEW_COLOR}"
    styler = view.style.apply(lambda row: [grey if row["note"] else ""] * len(row), axis=1).format(
        {"value": "{:.3f}"}, na_rep="—")
    st.dataframe(styler, hide_index=True, width="stretch")


def retrieval_panel(frame: pd.DataFrame) -> None:
    headline = frame[frame["slice_kind"] == "all"]
    for direction, title in (("t2i", "Text → image"), ("i2t", "Image → text")):
        names = [f"{direction}/{m}" for m in RETRIEVAL_METRICS]
        part = headline[headline["name"].isin(names)]
        if part.empty:
            st.caption(f"{title}: no retrieval metrics stored.")
            continue
        fig = figures.retrieval_figure(part)
        fig.update_layout(title=f"{title} retrieval (test gallery; bars = 95% CI)")
        st.plotly_chart(fig, width="stretch", key=f"compare_retrieval_{direction}")


def pair_gallery(pairs: pd.DataFrame, *, columns: int = 4, key: str = "gallery", limit: int = 12) -> None:
    """Thumbnails with escaped text, label and score for a few pairs."""
    if pairs.empty:
        st.caption("None.")
        return
    cols = st.columns(columns)
    for i, row in enumerate(pairs.head(limit).to_dict("records")):
        with cols[i % columns]:
            show_image(row["image_path"])
            st.text(str(row["text"])[:200])
            st.caption(f"{'match' if row['label'] == 1 else 'non-match'} · score {row['score']:.3f} "
                       f"· {escape_markdown(row.get('category') or '—')} · {escape_markdown(row['pair_kind'])}")
    if len(pairs) > limit:
        st.caption(f"{limit} of {len(pairs):,} shown.")


def flips_panel(comparison: dict, labels: dict[str, str], db: str) -> None:
    baseline = comparison["baseline"]
    for run_id, flips in comparison["flips"].items():
        a, b = labels.get(run_id, run_id), labels.get(baseline, baseline)
        st.markdown(f"**{escape_markdown(a)}** vs baseline **{escape_markdown(b)}**")
        left, right = st.columns(2)
        with left:
            st.markdown(f"A right / B wrong ({len(flips['right_here_wrong_baseline']):,} pairs)")
            pair_gallery(analysis.pair_details(run_id, flips["right_here_wrong_baseline"][:8], db=db),
                         columns=2, limit=8)
        with right:
            st.markdown(f"A wrong / B right ({len(flips['wrong_here_right_baseline']):,} pairs)")
            pair_gallery(analysis.pair_details(run_id, flips["wrong_here_right_baseline"][:8], db=db),
                         columns=2, limit=8)
        st.caption("A = this run, B = the baseline; scores shown are A's, each at its own val-chosen threshold.")


# ------------------------------------------------------------------------------------------------ embedding page
def diagnostics_panel(run_id: str, db: str) -> None:
    """Modality gap, alignment, uniformity, hubness and the description of the space they were measured in."""
    metrics = evaluation.load_metrics(run_id, db=db).set_index("name")
    art = evaluation.get_artifact(run_id, "diagnostics", db=db) or {}
    help_text = {"diag/modality_gap": "distance between the image and text centroids (lower = closer modalities)",
                 "diag/alignment": "mean squared distance of matched pairs (lower is better)",
                 "diag/uniformity": "log mean Gaussian potential (lower = more spread out)",
                 "diag/hubness": "skewness of k-occurrence (high = a few hubs dominate)"}
    for name, text in help_text.items():
        value = metrics["value"].get(name, art.get(name))
        st.metric(name.split("/")[1].replace("_", " "), "—" if value is None or pd.isna(value) else f"{value:.3f}",
                  help=text)
    if art.get("space"):
        st.caption(f"Measured in: {escape_markdown(art['space'])}.")
    if art.get("zero_vectors_left_out"):
        st.caption(f"{art['zero_vectors_left_out']} items with all-zero vectors were left out of these numbers.")


def selected_items(event: Any, frame: pd.DataFrame, limit: int = 24) -> pd.DataFrame:
    """Rows of the projection frame picked by a box/lasso selection (customdata = [item_id, modality])."""
    points = (getattr(event, "selection", None) or {}).get("points", []) if event else []
    keys = set()
    for p in points:
        custom = p.get("customdata")
        if isinstance(custom, (list, tuple)) and len(custom) >= 2:
            keys.add((str(custom[0]), str(custom[1])))
    if not keys:
        return frame.iloc[:0]
    mask = [(i, m) in keys for i, m in zip(frame["item_id"], frame["modality"], strict=True)]
    return frame[mask].head(limit)


def item_gallery(items: pd.DataFrame, total: int, columns: int = 6) -> None:
    st.markdown(f"**Selected: {total:,} items**" + (f" (first {len(items)} shown)" if total > len(items) else ""))
    cols = st.columns(columns)
    for i, row in enumerate(items.to_dict("records")):
        with cols[i % columns]:
            if row["modality"] == "image":
                show_image(row["image_path"], caption=f"{row['category'] or '—'} · {row['item_id']}")
            else:
                st.text(str(row["label_text"])[:200])
                st.caption(f"text · {escape_markdown(row['category'] or '—')}")


# ------------------------------------------------------------------------------------------------ mismatch page
def mismatch_card(row: dict, eval_set: str, db: str) -> None:
    """One pair: thumbnail, escaped text, score vs threshold, what was swapped, and the label-error button."""
    show_image(row["image_path"])
    st.text(str(row["text"])[:240])
    if row.get("original_text"):
        st.caption("swapped from:")
        st.text(str(row["original_text"])[:240])
    swapped = f" · swapped {escape_markdown(row['swapped_attribute'])}" if row.get("swapped_attribute") else ""
    st.caption(f"score **{row['score']:.3f}** vs threshold {row['threshold']:.3f} · "
               f"{'match' if row['label'] == 1 else 'non-match'} · {escape_markdown(row['category'] or '—')} · "
               f"{escape_markdown(row['pair_kind'])}{swapped}")
    if row["marked_label_error"]:
        st.badge("marked as label error", icon=":material/flag:", color="orange")
        if st.button("Unmark", key=f"mismatch_unmark_{row['pair_id']}"):
            analysis.unmark_label_error(eval_set, row["pair_id"], db=db)
            st.rerun()
    elif st.button("Mark as label error", key=f"mismatch_mark_{row['pair_id']}"):
        analysis.mark_label_error(eval_set, row["pair_id"], note="marked on the Mismatches page", db=db)
        st.session_state["mismatch_message"] = f"Pair {row['pair_id']} marked as a label error."
        st.rerun()


def label_error_policy(run_id: str, db: str) -> tuple[bool, str]:
    """Whether the run's stored metrics exclude label errors, and the recorded policy sentence."""
    policy = ((evaluation.get_artifact(run_id, "curves", db=db) or {}).get("policies") or {}).get("label_errors", "")
    return "excluded" in policy, policy


def recompute_metrics(run_id: str, db: str, toggle_key: str) -> None:
    """Toggle callback: recompute the run's metrics with or without the pairs marked as label errors."""
    exclude = bool(st.session_state[toggle_key])
    try:
        run = runner.get_run(run_id, db=db)
        evaluation.compute_metrics(run_id, db=db, exclude_label_errors=exclude, seed=int(run.get("seed") or 0))
        st.cache_data.clear()
        st.session_state["mismatch_message"] = ("Metrics recomputed " + ("excluding" if exclude else "including")
                                                + " pairs marked as label errors.")
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        st.session_state["mismatch_message"] = f"Recomputing metrics failed: {exc}"


def retrieval_failure_card(entry: dict) -> None:
    q, r = st.columns([1, 3])
    with q:
        if entry["query_modality"] == "text":
            st.text(str(entry["query_text"])[:240])
        else:
            show_image(entry["query_image_path"])
        st.caption(f"rank of the true item: **{entry['first_rank']}** (run's ranking, {entry['ties']} ties)")
    with r:
        cols = st.columns(max(len(entry["results"]), 1))
        for col, item in zip(cols, entry["results"], strict=False):
            with col:
                if item["image_path"]:
                    show_image(item["image_path"])
                else:
                    st.text(str(item["text"])[:160])
                st.caption(("✅ true item" if item["relevant"] else "✗ other product") + f" · {item['score']:.3f}")
