"""Robustness curves of the default offline configs on the bundled catalogue.

Run on demand (not part of pytest):  python -m benchmarks.bench_robustness [--products 300] [--severities 1,3,5]

The bundled catalogue (``--products``) is stored in a fresh database, the default offline configs (``python -m
workbench demo``) are run on it on the CPU, and :func:`workbench.robustness.run_robustness` re-scores each run's
test pairs under every image and text perturbation. Prints, per config, the clean test ROC-AUC and the ROC-AUC at
each severity of each perturbation with the drop's paired product-bootstrap CI (``*`` marks a drop whose CI
excludes 0), and writes the long results as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from workbench.data.evalsets import create_catalog_eval_set
from workbench.demo import demo_configs
from workbench.robustness import run_robustness
from workbench.run import runner


def cell(row: pd.Series) -> str:
    significant = row["drop_ci_low"] > 0 or row["drop_ci_high"] < 0
    return f"{row['value']:.3f} ({-row['drop']:+.3f}{'*' if significant else ''})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--severities", default="1,3,5")
    parser.add_argument("--suite", default="image,text")
    parser.add_argument("--out", help="write the long results as JSON (records)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "wb.duckdb"
        create_catalog_eval_set("bench", db=db, n_products=args.products, seed=0)
        tables, frames = [], []
        for config in demo_configs("default"):
            start = time.perf_counter()
            run_id = runner.run(config, "bench", db=db, device="cpu")
            record = runner.get_run(run_id, db=db)
            if record["status"] != "done":
                raise SystemExit(f"{config.name} {record['status']}: {record['error']}")
            run_s = time.perf_counter() - start
            start = time.perf_counter()
            results = run_robustness(run_id, suite=args.suite, severities=args.severities, db=db, device="cpu")
            print(f"{config.name}: run {run_s:.0f} s, robustness suite {time.perf_counter() - start:.0f} s",
                  flush=True)
            auc = results[results["metric"] == "pair/roc_auc"].assign(config=config.name)
            frames.append(results.assign(config=config.name))
            table = auc.assign(cell=auc.apply(cell, axis=1)).pivot(index="perturbation", columns="severity",
                                                                    values="cell")
            table.columns = [f"severity {c}" for c in table.columns]
            table.insert(0, "clean", f"{auc['clean_value'].iloc[0]:.3f}")
            tables.append(table.assign(config=config.name).reset_index().set_index(["config", "perturbation"]))
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 200):
        print("\nTest ROC-AUC under perturbation (change vs clean; * = paired product-bootstrap 95% CI excludes 0)")
        print(pd.concat(tables).to_string())
    if args.out:
        pd.concat(frames).to_json(args.out, orient="records", indent=1, force_ascii=False)


if __name__ == "__main__":
    main()
