"""Compare: leaderboard with CIs and paired tests, curves, operating point, calibration, slices, retrieval, flips.

Every read goes through :mod:`workbench.ui.cache`, keyed by the runs' metrics version.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from workbench.evaluation.aggregate import (
    MIN_SLICE_NEGATIVES,
    MIN_SLICE_POSITIVES,
    cost_threshold,
    operating_point,
)
from workbench.evaluation.compare import leaderboard_frame, paired_tests_frame
from workbench.metrics import calibrator_from_dict, get_metric, metric_view
from workbench.ui import cache
from workbench.ui.common import escape_markdown, show_image
from workbench.ui.detail import detail_button
from workbench.viz import figures

LEADERBOARD_METRICS = metric_view("leaderboard")
CALIBRATION_METRICS = metric_view("calibration")
RETRIEVAL_METRICS = ("success@1", "success@5", "success@10", "precision@5", "mrr", "ndcg@10")
SLICE_KINDS = ("category", "pair_kind", "swapped_attribute", "language")
SLICE_METRIC_CHOICES = metric_view("slice")


SHORT_LABEL_CHARS = 28  # leaderboard rows and chart legends stay on one line; the legend table has full labels


def choose_runs(runs: pd.DataFrame) -> tuple[list[str], str | None]:
    """The eval set first, then runs of that eval set (kept in ``selected_runs`` across pages) and a baseline
    among them: runs of two eval sets cannot be paired, so they are never offered together."""
    sets = list(dict.fromkeys(runs["eval_set"]))
    preferred = [s for s in (st.session_state["compare_eval_set"], st.session_state["selected_eval_set"])
                 if s in sets]
    if st.session_state.get("compare_eval_set_widget") not in sets:
        st.session_state["compare_eval_set_widget"] = preferred[0] if preferred else sets[0]
    counts = runs["eval_set"].value_counts()
    c1, c2 = st.columns([1, 1])
    eval_set = c1.selectbox("Eval set", sets, key="compare_eval_set_widget",
                            format_func=lambda s: f"{s} ({counts[s]} finished run(s))")
    st.session_state["compare_eval_set"] = eval_set
    mine = runs[runs["eval_set"] == eval_set]
    tags = sorted({tag for have in mine["tags"] for tag in (have or [])})
    wanted = c2.multiselect("Only runs tagged", tags, key="compare_tags", disabled=not tags,
                            help="Runs are tagged on the Runs page." if not tags else "Any of these tags.")
    if wanted:
        mine = mine[mine["tags"].map(lambda have: bool(set(have or []) & set(wanted)))]
        if mine.empty:
            st.info("No finished run of this eval set carries these tags.")
            return [], None
    labels = dict(zip(mine["run_id"], mine["label"], strict=True))
    kept = [r for r in st.session_state["selected_runs"] if r in labels]
    if st.session_state.get("compare_runs_widget") is None or any(
            r not in labels for r in st.session_state["compare_runs_widget"]):
        st.session_state["compare_runs_widget"] = kept or list(mine["run_id"][:2])
    selected = st.multiselect("Runs to compare", list(labels), format_func=labels.get, key="compare_runs_widget",
                              help="Finished runs of this eval set; type a name, config or run id to filter.")
    st.session_state["selected_runs"] = list(selected)
    if not selected:
        return [], None
    if st.session_state["compare_baseline"] not in selected:
        st.session_state["compare_baseline"] = selected[0]
    baseline = st.selectbox("Baseline (significance tests are against it)", selected, format_func=labels.get,
                            key="compare_baseline")
    return list(selected), baseline


def short_labels(selected: list[str], runs: pd.DataFrame) -> dict[str, str]:
    """'R1 · name-or-config' per selected run (cut to :data:`SHORT_LABEL_CHARS`): the eval set is the same for
    all of them and the run id is in the legend table, so tables and charts keep one line per run."""
    info = runs.set_index("run_id")
    out = {}
    for i, run_id in enumerate(selected, start=1):
        name = info.at[run_id, "name"] if "name" in info.columns else None
        base = str(name) if isinstance(name, str) and name else str(info.at[run_id, "config"])
        label = f"R{i} · {base}"
        out[run_id] = label if len(label) <= SHORT_LABEL_CHARS else label[:SHORT_LABEL_CHARS - 1] + "…"
    return out


def label_legend(selected: list[str], short: dict[str, str], runs: pd.DataFrame) -> None:
    """The short labels used below and the full run each stands for (name, config, eval set, run id, tags)."""
    info = runs.set_index("run_id")
    st.dataframe(pd.DataFrame({
        "label": [short[r] for r in selected], "run": [info.at[r, "label"] for r in selected],
        "tags": [", ".join(info.at[r, "tags"] or []) if "tags" in info.columns else "" for r in selected],
        "run_id": selected,
    }), hide_index=True, width="stretch")


def leakage_banner(runs: pd.DataFrame, selected: list[str], db: str) -> None:
    """A warning above the comparison for each selected run's eval set that leaks across splits."""
    names = sorted(set(runs.loc[runs["run_id"].isin(selected), "eval_set"]))
    sets = cache.eval_sets(db).set_index("name")
    versions = tuple((name, cache.eval_set_version(sets.loc[name]) if name in sets.index else "") for name in names)
    for warning in cache.leakage_warnings(versions, db):
        st.warning(escape_markdown(warning), icon=":material/warning:")


def curve_map(selected: list[str], labels: dict[str, str], db: str, version: tuple) -> dict[str, dict | None]:
    """Each selected run's stored curves (ROC, PR, reliability, calibrator, thresholds) by label."""
    return {labels[r]: cache.curves(r, db, version) for r in selected}


def curves_panel(curves: dict[str, dict | None]) -> None:
    left, right = st.columns(2)
    left.plotly_chart(figures.roc_figure(curves), width="stretch", key="compare_roc")
    right.plotly_chart(figures.pr_figure(curves), width="stretch", key="compare_pr")


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
    frame = leaderboard_frame(comparison, labels)
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
        st.dataframe(paired_tests_frame(comparison, labels), hide_index=True, width="stretch",
                     column_config={"Δ vs baseline": st.column_config.NumberColumn(format="%.4f")})


def _sync_threshold(source: str, target: str) -> None:
    st.session_state[target] = st.session_state[source]


def _reset_threshold(keys: tuple[str, str], value: float) -> None:
    for key in keys:
        st.session_state[key] = value


def threshold_control(run_id: str, low: float, high: float, chosen: float, *, probability: bool) -> float:
    """A slider and a number input bound to one threshold (either sets the other), plus a reset to the run's own
    threshold. On the probability scale the range is [0, 1] in steps of 0.001; on the score scale it spans the
    scores in 1,000 steps."""
    keys = (f"compare_thr_slider_{run_id}", f"compare_thr_number_{run_id}")
    step = 0.001 if probability else max((high - low) / 1000, 1e-6)
    for key in keys:
        if key not in st.session_state:
            st.session_state[key] = chosen
    what = "calibrated match probability" if probability else "score"
    c1, c2, c3 = st.columns([4, 1.4, 1], vertical_alignment="bottom")
    c1.slider(f"Decision threshold on the {what} (match iff {what} ≥ threshold)", low, high, step=step,
              format="%.4f", key=keys[0], on_change=_sync_threshold, args=keys)
    c2.number_input("Exact threshold", low, high, step=step, format="%.4f", key=keys[1],
                    on_change=_sync_threshold, args=(keys[1], keys[0]))
    c3.button("Run's own", key=f"compare_thr_reset_{run_id}", on_click=_reset_threshold, args=(keys, chosen),
              help="Back to the threshold the run chose on val.")
    return float(st.session_state[keys[0]])


def operating_point_panel(run_id: str, db: str, version: tuple, curve: dict | None) -> None:
    """Threshold (slider plus number input; on the calibrated probability scale when the run has a calibrator) →
    live precision/recall/F1/confusion; cost sliders → cheapest threshold (chosen on val)."""
    test = cache.scored_pairs(run_id, "test", db, version)
    if test.empty or test["label"].nunique() < 2:
        st.info("This run's test split needs matches and non-matches for an operating point.")
        return
    y, s = test["label"].to_numpy(), test["score"].to_numpy()
    chosen = float((curve or {}).get("threshold", s.mean()))
    stored = (curve or {}).get("calibration")
    calibrator = calibrator_from_dict(stored) if stored else None
    left, right = st.columns([3, 2])
    with left:
        if calibrator is not None:
            values = np.asarray(calibrator.predict(s), dtype=float)
            own = float(calibrator.predict([chosen])[0])
            threshold = threshold_control(run_id, 0.0, 1.0, round(own, 4), probability=True)
            above = s[values >= threshold]
            note = (f" Decisions use the {stored['method']} calibrator fitted on val; the run's own threshold is "
                    f"probability {own:.4f} (score {chosen:.4f}). At this probability the lowest matching test "
                    + (f"score is {above.min():.4f}." if len(above) else "pair: none."))
        else:
            values = s
            low, high = float(min(s.min(), chosen)), float(max(s.max(), chosen))
            threshold = threshold_control(run_id, low, high, chosen, probability=False)
            note = f" The run's own threshold (chosen on val) is {chosen:.4f}. No calibrator stored (metrics " \
                   "computed before calibration): thresholds are on the raw score."
        point = operating_point(y, values, threshold)
        cols = st.columns(4)
        for col, name in zip(cols, ("precision", "recall", "f1", "accuracy"), strict=True):
            col.metric(name, f"{point[name]:.3f}")
        st.caption(f"Test split, {len(y):,} pairs.{note}")
    with right:
        st.plotly_chart(figures.confusion_figure(point), width="stretch", key=f"compare_confusion_{run_id}")
    st.markdown("**Cost of mistakes** — the cheapest threshold on val, applied to test")
    c1, c2 = st.columns(2)
    cost_fp = c1.slider("Cost of a false match (FP)", 0.0, 10.0, 1.0, 0.5, key="compare_cost_fp")
    cost_fn = c2.slider("Cost of a missed match (FN)", 0.0, 10.0, 1.0, 0.5, key="compare_cost_fn")
    val = cache.scored_pairs(run_id, "val", db, version)
    if val["label"].nunique() == 2:
        best = cost_threshold(val["label"].to_numpy(), val["score"].to_numpy(), cost_fp, cost_fn)
        on_test = operating_point(y, s, best["threshold"])
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
    minimum = f"{MIN_SLICE_POSITIVES} positives and {MIN_SLICE_NEGATIVES} negatives"
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
    """Text→image and image→text retrieval metrics of every run, with their 95% CIs."""
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


def pair_gallery(pairs: pd.DataFrame, *, columns: int = 4, key: str = "gallery", limit: int = 12,
                 eval_set: str | None = None) -> None:
    """Thumbnails with escaped text, label and score for a few pairs (with a detail-view button when the eval set
    is given)."""
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
            if eval_set is not None:
                detail_button(eval_set, row["image_product"], key=f"{key}_detail_{row['pair_id']}")
    if len(pairs) > limit:
        st.caption(f"{limit} of {len(pairs):,} shown.")


def flips_panel(comparison: dict, labels: dict[str, str], db: str, version: tuple) -> None:
    """Pairs each run gets right where the baseline is wrong, and the reverse (a few of each)."""
    baseline = comparison["baseline"]
    eval_set = str(cache.finished_runs(db).set_index("run_id").at[baseline, "eval_set"])
    for run_id, flips in comparison["flips"].items():
        a, b = labels.get(run_id, run_id), labels.get(baseline, baseline)
        st.markdown(f"**{escape_markdown(a)}** vs baseline **{escape_markdown(b)}**")
        left, right = st.columns(2)
        with left:
            st.markdown(f"A right / B wrong ({len(flips['right_here_wrong_baseline']):,} pairs)")
            pair_gallery(cache.pair_details(run_id, tuple(flips["right_here_wrong_baseline"][:8]), db, version),
                         columns=2, limit=8, eval_set=eval_set, key=f"compare_flips_{run_id}_right")
        with right:
            st.markdown(f"A wrong / B right ({len(flips['wrong_here_right_baseline']):,} pairs)")
            pair_gallery(cache.pair_details(run_id, tuple(flips["wrong_here_right_baseline"][:8]), db, version),
                         columns=2, limit=8, eval_set=eval_set, key=f"compare_flips_{run_id}_wrong")
        st.caption("A = this run, B = the baseline; scores shown are A's, each at its own val-chosen threshold.")
