"""UMAP cost on 2 cores and the projection cache: fit time for 5k/20k/50k points, cached revisit, plot payload.

Run on demand (not part of pytest):  python -m benchmarks.bench_umap [--sizes 5000 20000 50000]
Points are random 64-d Gaussian clusters (L2-normalised like a joint space). The cached-revisit and payload figures
use a synthetic run stored in a temporary database, projected with the default settings (UMAP fitted on a stratified
5,000-point sample, the rest placed with transform).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from workbench import store  # noqa: E402
from workbench.viz import embedding_figure, get_projection  # noqa: E402
from workbench.viz.projection import compute_projection, normalise_params  # noqa: E402


def clusters(n: int, dim: int = 64, k: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    x = rng.normal(size=(k, dim))[labels] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def store_fake_run(db: Path, n: int) -> str:
    x, labels = clusters(n, seed=1)
    run_id = "bench-run"
    with store.connect(db) as con:
        con.execute("INSERT INTO runs (run_id, config_name, eval_set, status, created_at, threshold) "
                    "VALUES (?, 'bench', 'bench', 'done', ?, 0.5)", [run_id, datetime.now()])
        frame = pd.DataFrame({"run_id": run_id, "modality": np.where(np.arange(n) % 2, "image", "text"),
                              "item_id": [f"item{i:06d}-c{c}" for i, c in enumerate(labels)], "vector": list(x)})
        con.register("_emb", frame)
        con.execute("INSERT INTO run_embeddings SELECT run_id, modality, item_id, vector::FLOAT[] FROM _emb")
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--revisit-points", type=int, default=50000)
    args = parser.parse_args()
    results: dict[str, object] = {}

    t = time.perf_counter()
    compute_projection(*clusters(300)[:1], np.zeros(300), normalise_params("umap", sample_size=300))
    results["numba_warmup_s (first UMAP fit, 300 points)"] = round(time.perf_counter() - t, 1)
    for n in args.sizes:
        x, labels = clusters(n)
        params = normalise_params("umap", sample_size=n)  # fit on every point
        t = time.perf_counter()
        _, description = compute_projection(x, labels.astype(str), params)
        results[f"umap_fit_s ({n:,} points, all fitted)"] = round(time.perf_counter() - t, 1)
        print(description, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        n = args.revisit_points
        run_id = store_fake_run(db, n)
        t = time.perf_counter()
        first = get_projection(run_id, db=db)
        results[f"get_projection first visit_s ({n:,} points, default params)"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        again = get_projection(run_id, db=db)
        results["get_projection cached revisit_s"] = round(time.perf_counter() - t, 3)
        assert again.from_cache
        print(first.description, flush=True)
        t = time.perf_counter()
        payload = embedding_figure(again.frame, color_by="modality").to_json()
        results["embedding_figure+to_json_s"] = round(time.perf_counter() - t, 2)
        results[f"plot payload bytes ({n:,} points)"] = len(payload)
        results["payload bytes per point"] = round(len(payload) / n, 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
