"""The one-command demo: bundled catalogue + default offline configs, end to end."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from workbench.config import RunConfig, list_configs, load_config
from workbench.data.evalsets import DEMO_PRODUCTS, ensure_demo_eval_set

DEMO_SUITES = {
    "default": ("tfidf-colorhist-cca", "minilm-cnn-contrastive", "cnn-minilm-concat-mlp"),
}
SUMMARY_METRICS = ("pair/f1", "pair/roc_auc", "t2i/success@5", "i2t/success@5", "t2i/mrr", "zeroshot/acc@1")


def demo_configs(suite: str = "default") -> list[RunConfig]:
    if suite == "all":
        return [c for c in list_configs() if c.offline]
    if suite not in DEMO_SUITES:
        raise ValueError(f"Unknown demo suite {suite!r}. Available: {[*DEMO_SUITES, 'all']}")
    return [load_config(name) for name in DEMO_SUITES[suite]]


def results_table(run_ids: list[str], *, db=None) -> pd.DataFrame:
    """One row per run: config, status, duration and the summary metrics with 95% CIs."""
    from workbench.evaluation import load_metrics
    from workbench.runner import get_run

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
    """Create the demo catalogue if needed, run the suite's configs on it and return the results table."""
    from workbench import runner

    eval_set = ensure_demo_eval_set(db=db, n_products=n_products, progress=catalog_progress)
    execute = run or (lambda config, name: runner.run(config, name, db=db, device=device))
    run_ids = [execute(config, eval_set) for config in demo_configs(suite)]
    return results_table(run_ids, db=db)
