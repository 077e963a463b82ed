"""How well the label-error signals find injected label noise on the bundled catalogue.

Run on demand (not part of pytest):  python -m benchmarks.bench_label_errors [--products 500] [--fraction 0.05]

For each noise kind of :func:`workbench.evaluation.label_errors.inject_label_noise` (``flip``: 5% of all pairs get
the other label; ``title_swap``: 5% of the positives exchange titles two by two between products, so both become
wrong positives) the catalogue is stored as its own eval set, the default offline configs (``python -m workbench
demo``) are run on it, and :func:`workbench.evaluation.label_errors.label_error_candidates` over the three runs is
scored against the corrupted pair ids: ROC-AUC and precision@50 of each signal and of the combined score, on every
pair and on the test split (the only one with joint-space vectors, so the only one where ``neighbourhood`` has
values). A signal is scored on the pairs where it has a value (``coverage``). ``label only`` is a reference detector
that knows nothing but the stored label (its ROC-AUC shows how much the base rate alone gives away).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench import store
from workbench.data.catalog import generate_catalog
from workbench.data.evalsets import media_dir, store_eval_set
from workbench.data.model import EvalSetData
from workbench.data.splits import NEGATIVE_KINDS, make_pairs
from workbench.demo import demo_configs
from workbench.evaluation.label_errors import NOISE_KINDS, SIGNALS, inject_label_noise, label_error_candidates
from workbench.metrics import pair_metrics
from workbench.run import runner


def detection(is_error: np.ndarray, suspicion: np.ndarray, *, k: int) -> dict[str, float | int | None]:
    """ROC-AUC and precision@k of a suspicion score against the known errors, on the pairs where it is defined.

    precision@k is its expectation over the orders of tied scores: the pairs tied at the k-th value fill the
    remaining places at their group's error rate (pair ids encode the pair kind, so breaking ties by id would
    leak the answer to a detector with many ties, such as "label only").
    """
    have = np.isfinite(suspicion)
    y, s = is_error[have].astype(int), suspicion[have]
    auc = pair_metrics(y, s, threshold=0.5)["roc_auc"] if 0 < y.sum() < len(y) else None
    precision = None
    if len(s):
        k = min(k, len(s))
        kth = np.sort(s)[::-1][k - 1]
        above, tied = s > kth, s == kth
        precision = (y[above].sum() + (k - above.sum()) * y[tied].mean()) / k
    return {"roc_auc": None if auc is None or np.isnan(auc) else round(float(auc), 3),
            "precision@k": None if precision is None else round(float(precision), 3),
            "coverage": round(float(have.mean()), 3), "errors": int(y.sum()), "pairs": int(have.sum())}


def noisy_eval_set(db: Path, base: EvalSetData, kind: str, fraction: float, seed: int, name: str) -> list[str]:
    noisy, corrupted = inject_label_noise(base, kind=kind, fraction=fraction, seed=seed)
    with store.connect(db) as con:
        store_eval_set(con, name, noisy, seed=seed, source="bench_label_errors", fmt="catalog",
                       options={"noise": kind, "fraction": fraction}, replace=True)
    return corrupted


def score(run_ids: list[str], corrupted: list[str], db: Path, k: int) -> list[dict]:
    rows = []
    for scope in (None, "test"):
        table = label_error_candidates(run_ids, db=db, top=None, split=scope).sort_values("pair_id")
        is_error = table["pair_id"].isin(corrupted).to_numpy()
        detectors = {**{name: table[name].to_numpy(dtype=float) for name in (*SIGNALS, "score")},
                     "label only": table["label"].to_numpy(dtype=float)}
        for name, values in detectors.items():
            signal = "combined" if name == "score" else name
            rows.append({"scope": scope or "all", "signal": signal, **detection(is_error, values, k=k)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=500, help="catalogue size (default 500)")
    parser.add_argument("--fraction", type=float, default=0.05, help="share of pairs (flip) or positives "
                                                                     "(title_swap) corrupted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=50, help="k of precision@k")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--db", type=Path, default=None, help="database to use (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="bench-label-errors-")) / "wb.duckdb"

    start = time.perf_counter()
    parts = generate_catalog(media_dir(db, "label-noise"), n_products=args.products, seed=args.seed)
    base = make_pairs(EvalSetData(parts.products, parts.attributes, parts.images, parts.texts),
                      negatives=NEGATIVE_KINDS, seed=args.seed)
    results: dict[str, object] = {"products": args.products, "fraction": args.fraction, "seed": args.seed,
                                  "pairs": len(base.pairs), "configs": [c.name for c in demo_configs()],
                                  "catalogue_s": round(time.perf_counter() - start, 1), "noise": {}}
    for kind in NOISE_KINDS:
        name = f"label-noise-{kind}"
        corrupted = noisy_eval_set(db, base, kind, args.fraction, args.seed, name)
        t = time.perf_counter()
        run_ids = [runner.run(config, name, db=db, device=args.device) for config in demo_configs()]
        failed = {r: runner.get_run(r, db=db)["error"] for r in run_ids
                  if runner.get_run(r, db=db)["status"] != "done"}
        if failed:
            raise SystemExit(f"runs failed: {failed}")
        runs_s = time.perf_counter() - t
        t = time.perf_counter()
        rows = score(run_ids, corrupted, db, args.top)
        results["noise"][kind] = {"corrupted": len(corrupted), "runs_s": round(runs_s, 1),
                                  "candidates_s": round((time.perf_counter() - t) / 2, 2), "detection": rows}
        print(f"\n## {kind}: {len(corrupted)} corrupted pairs of {len(base.pairs)} ({args.products} products, "
              f"runs {runs_s:.0f} s)\n")
        print(pd.DataFrame(rows).to_string(index=False))
    results["total_s"] = round(time.perf_counter() - start, 1)
    print(f"\ntotal {results['total_s']} s; database {db}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
