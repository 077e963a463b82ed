"""Beyond one machine: a Ray encoding backend, large-gallery top-k retrieval and projections at scale.

- :mod:`workbench.scale.ray_backend` — ``encode_with_ray``, the runner's ``backend="ray"`` (needs
  ``requirements-scale.txt``; imported lazily).
- :mod:`workbench.scale.search` — exact chunked top-k (torch, GPU when present), FAISS HNSW/IVF top-k, ANN recall
  against exact, and streaming retrieval metrics from top-k lists (no N × N score matrix).
- Projections: ``workbench.viz.projection`` already fits UMAP on a stratified sample and places the rest with
  ``transform`` (or uses PCA); :func:`project_at_scale` adds cuML's GPU UMAP when it is importable.
"""

from __future__ import annotations

import importlib.util

import numpy as np

__all__ = ["cuml_available", "project_at_scale"]


def cuml_available() -> bool:
    """True when RAPIDS cuML (GPU UMAP) is importable; it is never required."""
    if importlib.util.find_spec("cuml") is None:
        return False
    try:
        import cuml  # noqa: F401
    except Exception:  # installed without a usable GPU/driver
        return False
    return True


def project_at_scale(vectors: np.ndarray, strata: np.ndarray, *, method: str = "umap", sample_size: int = 5000,
                     n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0,
                     prefer_gpu: bool = True) -> tuple[np.ndarray, str]:
    """(N, 2) float32 coordinates and a sentence saying what was fitted on what.

    UMAP is fitted on a stratified sample of ``sample_size`` points and applied to the rest with ``transform``
    (cuML on the GPU when available and ``prefer_gpu``, else umap-learn via ``workbench.viz.projection``); PCA uses
    every point.
    """
    from workbench.viz.projection import compute_projection, normalise_params, stratified_sample

    params = normalise_params(method, n_neighbors=n_neighbors, min_dist=min_dist, sample_size=sample_size,
                              seed=seed)
    if params["method"] != "umap" or not (prefer_gpu and cuml_available()):
        return compute_projection(vectors, strata, params)
    from cuml.manifold import UMAP as CumlUMAP

    fit_idx = stratified_sample(strata, params["sample_size"], seed=seed)
    reducer = CumlUMAP(n_components=2, n_neighbors=min(n_neighbors, max(len(fit_idx) - 1, 2)), min_dist=min_dist,
                       random_state=seed)
    reducer.fit(np.asarray(vectors[fit_idx], dtype=np.float32))
    coords = np.asarray(reducer.transform(np.asarray(vectors, dtype=np.float32)), dtype=np.float32)
    return coords, (f"cuML UMAP (GPU, n_neighbors={n_neighbors}, min_dist={min_dist:g}, seed {seed}) fitted on a "
                    f"stratified sample of {len(fit_idx):,} of {len(vectors):,} points and applied with transform")
