"""The one-command demo: bundled catalogue + default offline configs, end to end, in two sizes.

``full`` is the 2,000-product catalogue with the default suite (three offline designs, minutes on 2 CPU cores).
``quick`` is a 500-product catalogue with three fusion heads over one pair of cheap encoders (TF-IDF text, colour
histograms; fitted once, the later variants read them from the embedding cache): well under a minute on 2 cores,
and the best variant still above 0.7 ROC-AUC with clear gaps between the three (README, "The demo").
:func:`start_demo` is the app's launcher: it never queues a variant that is already queued, running or done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pandas as pd

from workbench.config import RunConfig, config_from_dict, list_configs, load_config
from workbench.data.evalsets import DEMO_PRODUCTS, demo_eval_set_name, ensure_demo_eval_set
from workbench.evaluation.compare import format_p_value

DEMO_SUITES = {
    "default": ("tfidf-colorhist-cca", "minilm-cnn-contrastive", "cnn-minilm-concat-mlp"),
    # The reference architectures (README "Reference architectures"); the first config is the baseline.
    "reference": (
        "ref-baseline-contrastive",
        "ref-cnn-lstm-soft-attention",
        "ref-resnet-minilm-attention-fusion",
        "ref-vst-tags",
        "ref-concat-mlp",
        "ref-multitask",
    ),
}
_QUICK_ENCODERS = {"image_encoder": {"type": "color_histogram"}, "text_encoder": {"type": "tfidf", "dim": 256}}
QUICK_CONFIGS: tuple[dict, ...] = (  # one pair of encoders, three heads: the gaps come from the heads alone
    {"name": "quick-tfidf-hist-cca", "fusion": {"type": "cca", "n_components": 8, "reg": 0.1},
     "description": "Quick demo: TF-IDF text + colour histograms joined by an 8-component CCA."},
    {"name": "quick-tfidf-hist-contrastive", "fusion": {"type": "contrastive", "dim": 32, "epochs": 60},
     "description": "Quick demo: the same encoders projected into a 32-d joint space with InfoNCE."},
    {"name": "quick-tfidf-hist-mlp", "fusion": {"type": "concat_mlp", "epochs": 40},
     "description": "Quick demo: the same encoders classified by an MLP over [v, t, v*t, |v-t|]."},
)
QUICK_PRODUCTS = 500
DEMO_SIZES: dict[str, tuple[int, str]] = {"quick": (QUICK_PRODUCTS, "quick"), "full": (DEMO_PRODUCTS, "default")}
"""Size name -> (catalogue products, suite)."""
NEGATIVE_KINDS = ("random", "hard", "attribute")
COMPARISON_TESTS = (("pair/f1", "paired bootstrap"), ("pair/accuracy", "McNemar"), ("pair/roc_auc", "DeLong"))
SUMMARY_METRICS = ("pair/f1", "pair/roc_auc", "t2i/success@5", "i2t/success@5", "t2i/mrr", "zeroshot/acc@1")


def demo_configs(suite: str = "default") -> list[RunConfig]:
    if suite == "all":
        return [c for c in list_configs(saved=False) if c.offline]
    if suite == "quick":
        return [config_from_dict({**_QUICK_ENCODERS, "offline": True, **spec}) for spec in QUICK_CONFIGS]
    if suite not in DEMO_SUITES:
        raise ValueError(f"Unknown demo suite {suite!r}. Available: {[*DEMO_SUITES, 'quick', 'all']}")
    return [load_config(name) for name in DEMO_SUITES[suite]]


def demo_size(size: str) -> tuple[int, str]:
    """(catalogue products, suite) of a demo size: ``quick`` or ``full``."""
    if size not in DEMO_SIZES:
        raise ValueError(f"Unknown demo size {size!r}. Available: {list(DEMO_SIZES)}")
    return DEMO_SIZES[size]


_launch_lock = threading.Lock()  # two clicks in two app sessions must not both queue the same variants


def start_demo(size: str = "quick", *, db=None, device: str = "auto") -> list[str]:
    """Queue the demo of ``size`` in the background (the app's "Run the demo"); returns the run ids, one per
    variant in suite order.

    Idempotent: a variant (same config name and fingerprint) already queued, running or done on the demo's eval
    set keeps its run, so pressing the button twice queues nothing new; only missing, failed, cancelled or
    interrupted variants are queued again.
    """
    from workbench.run import runner

    n_products, suite = demo_size(size)
    eval_set = demo_eval_set_name(n_products, 0)
    configs = demo_configs(suite)
    with _launch_lock:
        runs = runner.list_runs(db=db, eval_set=eval_set)
        live = runs[runs["status"].isin(("queued", "running", "done"))]
        existing = {(c, f): r for r, c, f in zip(live["run_id"], live["config"], live["fingerprint"], strict=True)}
        missing = [c for c in configs if (c.name, c.fingerprint()) not in existing]
        queued = iter(runner.start_background_batch(missing, [eval_set], db=db, device=device) if missing else [])
        return [existing.get((c.name, c.fingerprint())) or next(queued) for c in configs]


def results_table(run_ids: list[str], *, db=None) -> pd.DataFrame:
    """One row per run: config, status, duration and the summary metrics with 95% CIs."""
    from workbench.evaluation.aggregate import load_metrics
    from workbench.run.runner import get_run

    rows = []
    for run_id in run_ids:
        record = get_run(run_id, db=db)
        row = {"run_id": run_id, "config": record["config_name"], "status": record["status"]}
        if record["status"] == "done":
            metrics = load_metrics(run_id, db=db).set_index("name")
            for name in SUMMARY_METRICS:
                if name in metrics.index:
                    m = metrics.loc[name]
                    ci = "" if pd.isna(m["ci_low"]) else f" [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
                    row[name] = f"{m['value']:.3f}{ci}"
        else:
            row["error"] = record["error"]
        if record["started_at"] is not None and record["finished_at"] is not None:
            row["seconds"] = round((record["finished_at"] - record["started_at"]).total_seconds(), 1)
        rows.append(row)
    return pd.DataFrame(rows)


def run_demo(
    *,
    db=None,
    n_products: int = DEMO_PRODUCTS,
    suite: str = "default",
    device: str = "auto",
    catalog_progress: Callable[[int, int], None] | None = None,
    run: Callable[[RunConfig, str], str] | None = None,
) -> pd.DataFrame:
    """Create the demo catalogue if needed, run the suite's configs on it and return the results table (the CLI;
    ``n_products=QUICK_PRODUCTS, suite="quick"`` is ``demo --quick``)."""
    from workbench.run import runner

    eval_set = ensure_demo_eval_set(db=db, n_products=n_products, progress=catalog_progress)
    execute = run or (lambda config, name: runner.run(config, name, db=db, device=device))
    run_ids = [execute(config, eval_set) for config in demo_configs(suite)]
    return results_table(run_ids, db=db)


def _with_ci(value: float | None, ci: list | None) -> str:
    if value is None:
        return ""
    low, high = ci or (None, None)
    return f"{value:.3f}" + ("" if low is None or high is None else f" [{low:.3f}, {high:.3f}]")


def _negative_kind_auc(run_id: str, *, db=None) -> tuple[dict[str, float], set[str]]:
    """ROC-AUC of the test positives against each kind of negative (the per-slice metrics), and the kinds with
    too few pairs to rank (see ``workbench.evaluation.aggregate.MIN_SLICE_POSITIVES``)."""
    from workbench.evaluation.aggregate import load_metrics

    slices = load_metrics(run_id, db=db, slices=True)
    rows = slices[(slices["slice_kind"] == "pair_kind") & (slices["name"] == "pair/roc_auc")]
    rows = rows[rows["slice_value"].isin(NEGATIVE_KINDS) & rows["value"].notna()]
    return dict(zip(rows["slice_value"], rows["value"].astype(float), strict=True)), set(
        rows.loc[rows["too_few"], "slice_value"])


def _p(p: float) -> str:
    """"=0.0123" or "<1e-4" (see :func:`workbench.evaluation.compare.format_p_value`)."""
    text = format_p_value(p)
    return text.replace(" ", "") if text.startswith("<") else f"={text}"


def comparison_table(run_ids: list[str], baseline: str, db=None) -> pd.DataFrame:
    """One row per run: F1, accuracy and ROC-AUC with 95% CIs and their change against ``baseline`` with the
    Holm-corrected p-value of its paired test (F1: paired bootstrap, accuracy: McNemar, ROC-AUC: DeLong), then
    t2i/success@5 with CI, ROC-AUC against each negative kind and the worst kind (lowest AUC among the kinds with
    enough pairs; the others are marked "too few pairs" and not ranked).

    Built on :func:`workbench.evaluation.compare_runs`; runs that did not finish get a row with their status
    and error only (they cannot be paired). The baseline row has no deltas.
    """
    from workbench.evaluation.compare import compare_runs
    from workbench.run.runner import get_run

    records = {r: get_run(r, db=db) for r in dict.fromkeys([baseline, *run_ids])}
    if records[baseline]["status"] != "done":
        raise ValueError(f"baseline run {baseline} is {records[baseline]['status']}: {records[baseline]['error']}")
    done = [r for r, rec in records.items() if rec["status"] == "done"]
    comparison = compare_runs(done, db=db, baseline=baseline)
    table = {row["run_id"]: row for row in comparison["table"]}
    tests = {t["run_id"]: t for t in comparison["tests"]}
    rows = []
    for run_id, record in records.items():
        row: dict = {"config": record["config_name"], "run_id": run_id}
        if record["status"] != "done":
            rows.append({**row, "status": record["status"], "error": record["error"]})
            continue
        metrics = table[run_id]
        for name, test in COMPARISON_TESTS:
            row[name] = _with_ci(metrics.get(name), metrics.get(f"{name} CI"))
            result = tests.get(run_id, {}).get(name)
            row[f"Δ {name.split('/')[1]} (p, {test})"] = (
                "baseline" if run_id == baseline else f"{result['delta']:+.3f} (p{_p(result['p_holm'])})"
            )
        row["t2i/success@5"] = _with_ci(metrics.get("t2i/success@5"), metrics.get("t2i/success@5 CI"))
        auc, small = _negative_kind_auc(run_id, db=db)
        for kind in NEGATIVE_KINDS:
            row[f"AUC vs {kind}"] = f"{auc[kind]:.3f}" + (" (too few pairs)" if kind in small else "") if (
                kind in auc) else ""
        ranked = {k: v for k, v in auc.items() if k not in small}  # too few pairs: never ranked worst
        worst = min(ranked, key=ranked.get) if ranked else None
        row["worst negative kind"] = "" if worst is None else f"{worst} ({auc[worst]:.3f})"
        if record["started_at"] is not None and record["finished_at"] is not None:
            row["seconds"] = round((record["finished_at"] - record["started_at"]).total_seconds(), 1)
        rows.append(row)
    return pd.DataFrame(rows)
