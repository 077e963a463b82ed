"""On-demand timings of the metrics package (not part of pytest): ``python -m benchmarks.bench_metrics``.

Every ratio divides two timings taken in this one run, so they compare across machines better than seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

# Run as a plain script from a checkout: make the repository root importable.


def best_of(fn: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_pairs(n: int = 1_000_000) -> np.ndarray:
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    from workbench.metrics import pair_metrics

    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.2).astype(np.int8)
    s = rng.normal(size=n) + y
    argsort = best_of(lambda: np.argsort(s))
    ours = best_of(lambda: pair_metrics(y, s, threshold=0.5))

    def sklearn_calls() -> None:
        roc_auc_score(y, s)
        average_precision_score(y, s)
        f1_score(y, s >= 0.5)

    sk = best_of(sklearn_calls, repeats=2)
    print(f"pairs n={n:,}: one np.argsort {argsort * 1e3:.1f} ms")
    print(
        f"  pair_metrics (roc_auc + pr_auc + f1 + 8 more) {ours * 1e3:.1f} ms  ratio {ours / argsort:.2f} (goal <= 3)"
    )
    print(f"  sklearn roc_auc + average_precision + f1      {sk * 1e3:.1f} ms  ratio {sk / argsort:.2f}")
    return s


def bench_bootstrap(n: int = 1_000_000, n_groups: int = 100_000, n_resamples: int = 1000) -> None:
    from workbench.metrics import bootstrap_pair_metrics

    rng = np.random.default_rng(1)
    groups = rng.integers(0, n_groups, n)
    y = (rng.random(n) < 0.2).astype(np.int8)
    s = rng.normal(size=n) + y
    start = time.perf_counter()
    out = bootstrap_pair_metrics(y, s, threshold=0.5, groups=groups, n_resamples=n_resamples, seed=0)
    wall = time.perf_counter() - start
    print(
        f"bootstrap_pair_metrics n={n:,}, {n_groups:,} groups, {n_resamples} resamples, 6 metrics: "
        f"{wall:.2f} s (goal <= 10 s); roc_auc CI {out['roc_auc'][1]:.4f}..{out['roc_auc'][2]:.4f}"
    )


def bench_retrieval(n: int = 10_000, dim: int = 256, chunk: int = 1024) -> None:
    from workbench.metrics import retrieval_metrics_from_embeddings

    rng = np.random.default_rng(2)
    groups = np.arange(n)
    q = rng.normal(size=(n, dim)).astype(np.float32)
    g = (q + rng.normal(scale=2.0, size=(n, dim))).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)

    def bare() -> None:
        g_t = g.T
        for a in range(0, n, chunk):
            q[a : a + chunk] @ g_t

    def full() -> None:
        retrieval_metrics_from_embeddings(q, g, groups, groups, ks=(1, 5, 10), chunk_size=chunk)

    # Interleaved so drifting load on a shared machine hits both timings alike.
    t_bare, t_full = np.inf, np.inf
    for _ in range(3):
        t_bare = min(t_bare, best_of(bare, repeats=1))
        t_full = min(t_full, best_of(full, repeats=1))
    print(f"retrieval {n:,} x {n:,} ({dim}-d float32, chunk {chunk}): bare chunked matmul {t_bare:.3f} s")
    print(f"  retrieval_metrics_from_embeddings {t_full:.3f} s  ratio {t_full / t_bare:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    bench_pairs()
    bench_bootstrap()
    bench_retrieval()
