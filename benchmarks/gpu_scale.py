"""Chunked exact retrieval on a GPU: ``exact_topk`` + streaming metrics ÷ the bare chunked matrix product.

    python -m benchmarks.gpu_scale [--shapes 100000x100000 10000x1000000]

Both sides move the same query chunks to the device and multiply them with the same device-resident gallery;
the difference is the running top-k merge (and, for the metrics, the streaming Success/Recall/MRR/nDCG pass).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from workbench.scale.search import exact_topk, retrieval_metrics_from_topk


def synthetic(n_queries: int, n_gallery: int, dim: int = 512, seed: int = 0):
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((n_gallery, dim), dtype=np.float32)
    groups = np.arange(n_gallery)
    query_groups = rng.integers(0, n_gallery, n_queries)
    queries = gallery[query_groups] + 1.5 * rng.standard_normal((n_queries, dim), dtype=np.float32)
    for x in (gallery, queries):
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return queries, gallery, query_groups, groups


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", nargs="+", default=["100000x100000", "10000x1000000"])
    parser.add_argument("--chunk", type=int, default=8192)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print("device:", torch.cuda.get_device_name() if device.type == "cuda" else "CPU", flush=True)
    for shape in args.shapes:
        n_q, n_g = (int(v) for v in shape.split("x"))
        q, g, qg, gg = synthetic(n_q, n_g)
        exact_topk(q[:256], g, k=10, chunk_size=args.chunk, device=device)  # warm-up
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            g_dev = torch.from_numpy(g).to(device)
            for a in range(0, n_q, args.chunk):
                (torch.from_numpy(q[a : a + args.chunk]).to(device) @ g_dev.T).max()
            sync()
        bare = time.perf_counter() - start
        del g_dev
        torch.cuda.empty_cache() if device.type == "cuda" else None
        torch.cuda.reset_peak_memory_stats() if device.type == "cuda" else None
        start = time.perf_counter()
        _, idx = exact_topk(q, g, k=10, chunk_size=args.chunk, device=device)
        sync()
        topk = time.perf_counter() - start
        start = time.perf_counter()
        metrics = retrieval_metrics_from_topk(idx, qg, gg, ks=(1, 5, 10))
        streaming = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        print(f"{n_q:,} x {n_g:,} x 512: bare chunked matmul {bare:.2f} s, exact top-10 {topk:.2f} s, streaming "
              f"metrics {streaming:.2f} s, ratio {(topk + streaming) / bare:.2f}, peak GPU memory {peak:.1f} GiB "
              f"(dense scores would be {n_q * n_g * 4 / 2**30:.0f} GiB); success@10 {metrics['success@10']:.3f}",
              flush=True)


if __name__ == "__main__":
    main()
