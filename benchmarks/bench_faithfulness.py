"""Faithfulness of the explanations on the bundled catalogue: deletion curves against random deletion.

Run on demand (not part of pytest):  python -m benchmarks.bench_faithfulness [--products 300] [--pairs 30]

The default offline configs (``python -m workbench demo``) are run on the bundled catalogue (an existing finished run
of the same config on the same catalogue in ``--db`` is reused), restored, and ``--pairs`` positive test pairs are
explained with EVERY explainer that applies to each side (not only the default one). Each explanation gets a
deletion curve: its top-k% patches or words deleted (k = 0, 10, …, 100), against ``--random`` random deletion orders
(:mod:`workbench.explain.faithfulness`). Per (config, side, method) the table gives the mean area between the random
and the deletion curve in score units with a 95% bootstrap CI over pairs (> 0: the explanation finds what the score
depends on faster than chance), the mean area per unit of the whole drop (``area_norm``), the share of pairs whose
area is positive, the mean score drop after deleting the top 20% (explained vs random), and seconds per explanation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.evalsets import ensure_demo_eval_set
from workbench.demo import demo_configs
from workbench.explain import applicable, deletion_curve
from workbench.explain.base import PairContext, explain_side
from workbench.run import runner
from workbench.run.restore import restore_run_models


def finished_run(config, eval_set: str, db: Path, device: str) -> str:
    """A done run of ``config`` on ``eval_set`` (reused when the database has one, else run now)."""
    runs = runner.list_runs(db=db, eval_set=eval_set)
    done = runs[(runs["status"] == "done") & (runs["fingerprint"] == config.fingerprint())]
    if len(done):
        return str(done["run_id"].iloc[0])
    run_id = runner.run(config, eval_set, db=db, device=device)
    record = runner.get_run(run_id, db=db)
    if record["status"] != "done":
        raise SystemExit(f"{config.name} {record['status']}: {record['error']}")
    return run_id


def bootstrap_ci(values: np.ndarray, seed: int, resamples: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(resamples, len(values)), replace=True).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def evaluate_config(config, eval_set: str, db: Path, args: argparse.Namespace) -> list[dict]:
    run_id = finished_run(config, eval_set, db, args.device)
    models = restore_run_models(run_id, db=db, device=args.device)
    pairs = models.data.pairs
    chosen = pairs[(pairs["split"] == "test") & (pairs["label"] == 1)].sample(
        n=min(args.pairs, int(((pairs["split"] == "test") & (pairs["label"] == 1)).sum())), random_state=args.seed)
    per_method: dict[tuple[str, str], dict[str, list]] = {}
    for pair in chosen.itertuples():
        context = PairContext.of(models, pair.image_id, pair.text_id)
        for side in ("image", "text"):
            for explainer in applicable(models, side):
                start = time.perf_counter()
                explanation, reason = explain_side(context, side, explainer.name)
                seconds = time.perf_counter() - start
                record = per_method.setdefault((side, explainer.name), {"curves": [], "seconds": [], "reasons": []})
                if explanation is None:
                    record["reasons"].append(reason)
                    continue
                record["seconds"].append(seconds)
                record["curves"].append(deletion_curve(models, pair.image_id, pair.text_id, explanation, side,
                                                       n_random=args.random, seed=args.seed))
    rows = []
    for (side, method), record in per_method.items():
        curves = record["curves"]
        if not curves:
            rows.append({"config": config.name, "side": side, "method": method, "pairs": 0,
                         "note": record["reasons"][0][:80] if record["reasons"] else ""})
            continue
        areas = np.array([c.area for c in curves])
        norms = np.array([c.area_norm for c in curves])
        at20 = int(np.argmin(np.abs(curves[0].fractions - 0.2)))
        low, high = bootstrap_ci(areas, args.seed)
        rows.append({
            "config": config.name, "side": side, "method": method, "pairs": len(curves),
            "area": round(float(areas.mean()), 4), "area_ci": [round(low, 4), round(high, 4)],
            "area_norm": round(float(np.nanmean(norms)), 3) if np.isfinite(norms).any() else None,
            "share_area>0": round(float((areas > 0).mean()), 2),
            "drop@20% explained": round(float(np.mean([c.deletion[0] - c.deletion[at20] for c in curves])), 4),
            "drop@20% random": round(float(np.mean([c.random[0] - c.random[at20] for c in curves])), 4),
            "s/explanation": round(float(np.mean(record["seconds"])), 3),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=300, help="bundled catalogue size (default 300)")
    parser.add_argument("--pairs", type=int, default=30, help="positive test pairs explained per config (default 30)")
    parser.add_argument("--random", type=int, default=8, help="random deletion orders per pair (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--db", type=Path, default=None, help="database to use (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="bench-faithfulness-")) / "wb.duckdb"

    start = time.perf_counter()
    eval_set = ensure_demo_eval_set(db=db, n_products=args.products, seed=args.seed)
    rows = []
    for config in demo_configs("default"):
        t = time.perf_counter()
        rows += evaluate_config(config, eval_set, db, args)
        print(f"{config.name}: {time.perf_counter() - t:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    print(f"\nDeletion vs random on {eval_set} ({args.pairs} positive test pairs per config, {args.random} random "
          f"orders; area in score units, 95% bootstrap CI over pairs)\n")
    print(table.to_string(index=False))
    total = round(time.perf_counter() - start, 1)
    print(f"\ntotal {total} s; database {db}")
    if args.json:
        args.json.write_text(json.dumps({"products": args.products, "pairs": args.pairs, "random": args.random,
                                         "seed": args.seed, "total_s": total, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
