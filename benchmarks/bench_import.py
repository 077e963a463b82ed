"""Import throughput on the bundled catalogue: rows/s, images validated/s and peak memory.

    python -m benchmarks.bench_import [--products 2000 20000]

For each size: render the synthetic catalogue once, write it as a CSV (one row per title, image paths relative to
the CSV), then time ``import_eval_set`` (read + validate every image + negatives + splits + store) in a fresh
process so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def write_csv(folder: Path, n_products: int) -> tuple[Path, int, int]:
    from workbench.data.catalog import generate_catalog

    parts = generate_catalog(folder / "images", n_products=n_products, seed=0)
    attrs = parts.attributes.pivot(index="product_id", columns="name", values="value").add_prefix("attr.")
    images = parts.images.groupby("product_id")["path"].apply(list)
    rows = []
    for text in parts.texts.itertuples():
        paths = images[text.product_id]
        rows.append({"image": str(Path(paths[int(text.text_id[-1]) % len(paths)]).relative_to(folder)),
                     "title": text.text, "product_id": text.product_id, "language": text.language})
    frame = pd.DataFrame(rows).merge(parts.products, on="product_id").merge(attrs, left_on="product_id",
                                                                              right_index=True)
    path = folder / "catalogue.csv"
    frame.to_csv(path, index=False)
    return path, len(frame), frame["image"].nunique()


def measure(csv: str, db: str) -> None:
    """Child process: one import, printed as JSON."""
    from workbench.data.evalsets import import_eval_set

    start = time.perf_counter()
    outcome = import_eval_set(csv, "bench", db=db, strict=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "imported": outcome.imported, "peak_rss_mb": peak_mb,
                      "n_pairs": outcome.summary.get("n_pairs")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--child", nargs=2, metavar=("CSV", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(*args.child)
        return
    for n in args.products:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            csv, n_rows, n_images = write_csv(Path(tmp), n)
            rendered = time.perf_counter() - start
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_import", "--child", str(csv),
                                  str(Path(tmp) / "bench.duckdb")], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{n} products: {n_rows} rows, {n_images} images (rendered in {rendered:.0f} s); import "
                  f"{result['seconds']:.1f} s = {n_rows / result['seconds']:.0f} rows/s, "
                  f"{n_images / result['seconds']:.0f} images validated/s; {result['n_pairs']} pairs stored; "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
