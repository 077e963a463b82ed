"""Search latency over a large gallery as a ratio to one matrix–vector product, measured in one run (on demand).

    python -m benchmarks.bench_search [--n 100000] [--dim 512] [--repeats 30] [--ann hnsw|ivf]

One query against an N × dim float32 gallery of L2-normalised vectors, through the Search page's own code
(``workbench.run.search``):

- exact:       the joint-space path, ``_Space.topk`` k=10 (the held gallery times the query, a partial sort);
- exact_topk:  ``workbench.scale.search.exact_topk`` k=10 on the same single query, for reference (built for query
               batches: it checks and chunks the whole gallery on every call);
- bm25:        a pair head's lexical retriever, top 100 of BM25 over N synthetic English titles;
- ann:         with ``--ann``, the joint-space path through a FAISS index built once (build time and recall@10
               against exact reported; random vectors are ANN's worst case, and HNSW takes minutes to build here).

Each is divided by the bare ``gallery @ query`` (numpy), timed alternately with it so the machine's changing load
hits both alike; medians over ``--repeats``. Query encoding is not included: it does not grow with the gallery.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from workbench.data.model import EvalSetData
from workbench.run.search import RERANK_DEPTH, _Bm25, _Space
from workbench.scale.search import exact_topk

WORDS = ("red blue green black white cotton silk leather wool shirt dress chair lamp mug bag shoe hat scarf "
         "classic modern slim soft warm light heavy summer winter office").split()


def paired_ratio(run: Callable[[], object], baseline: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median seconds of ``run`` and of ``baseline`` timed alternately, and the median of their per-pair ratios."""
    ratios, run_s, base_s = [], [], []
    run(), baseline()  # warm caches and thread pools
    for _ in range(repeats):
        start = time.perf_counter()
        baseline()
        middle = time.perf_counter()
        run()
        end = time.perf_counter()
        base_s.append(middle - start)
        run_s.append(end - middle)
        ratios.append((end - middle) / (middle - start))
    return {"ms": statistics.median(run_s) * 1000, "matvec_ms": statistics.median(base_s) * 1000,
            "ratio": statistics.median(ratios)}


def _titles_frame(n: int, rng: np.random.Generator) -> EvalSetData:
    words = np.asarray(WORDS)
    titles = [" ".join(words[rng.integers(0, len(words), 6)]) + f" item{i}" for i in range(n)]
    products = [f"p{i}" for i in range(n)]
    return EvalSetData(products=pd.DataFrame({"product_id": products, "category": "x"}),
                       images=pd.DataFrame({"image_id": products, "product_id": products}),
                       texts=pd.DataFrame({"text_id": products, "product_id": products, "text": titles}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="gallery size (default 100000)")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension (default 512)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu", help="device of exact_topk (default cpu)")
    parser.add_argument("--ann", choices=["hnsw", "ivf"], default=None, help="also time a FAISS index (opt-in)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    query = gallery[rng.integers(args.n)] + 0.05 * rng.standard_normal(args.dim, dtype=np.float32)
    query /= np.linalg.norm(query)
    rows = np.arange(args.n)

    def matvec() -> np.ndarray:
        return gallery @ query

    out: dict[str, object] = {"gallery": f"{args.n} x {args.dim} float32", "k": 10, "device": args.device,
                              "repeats": args.repeats}
    exact = _Space(lambda _: (gallery, gallery[:1]), None, rows, rows[:1], "synthetic", "exact")
    out["exact"] = paired_ratio(lambda: exact.topk(query, "image", 10), matvec, args.repeats)
    out["exact_topk"] = paired_ratio(lambda: exact_topk(query[None], gallery, k=10, device=args.device), matvec,
                                     args.repeats)
    if args.ann:
        start = time.perf_counter()
        ann = _Space(lambda _: (gallery, gallery[:1]), None, rows, rows[:1], "synthetic", args.ann)
        built = time.perf_counter() - start
        found = set(ann.topk(query, "image", 10)[1]) & set(exact.topk(query, "image", 10)[1])
        out[args.ann] = {**paired_ratio(lambda: ann.topk(query, "image", 10), matvec, args.repeats),
                         "build_s": built, "recall@10": len(found) / 10}
    start = time.perf_counter()
    bm25 = _Bm25(_titles_frame(args.n, rng), rows)
    built = time.perf_counter() - start
    out["bm25"] = {**paired_ratio(lambda: bm25.topk("red leather office chair", RERANK_DEPTH), matvec,
                                  args.repeats), "build_s": built, "top": RERANK_DEPTH}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
