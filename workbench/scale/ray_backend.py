"""Encode a run's items on a Ray cluster: Parquet shards → Ray Data actor pool → Parquet shards → DuckDB cache.

Same contract as :func:`workbench.run.encoding.encode_with_cache`: only items missing from the embedding cache (keyed by
encoder fingerprint and content hash) are encoded, and the result is read back with ``encoding.read_cache`` in the
caller's order. What moves where:

1. the driver exports the missing ``(content_hash, source)`` rows to Parquet shards in a run-local folder and
   hands each shard to Ray's object store as one block;
2. Ray Data's ``map_batches`` runs an actor pool over the blocks, one model per actor (one GPU per actor when the
   driver or the cluster has GPUs, CPU actors otherwise); the encoder, already fitted on the driver, travels to
   the actors as a Ray object (Ray's own transport);
3. the encoded blocks stream back to the driver, which writes them as Parquet shards ``(content_hash, vector as
   float32 bytes, tokens)`` next to the input shards, so no shared storage is needed for outputs;
4. every few thousand rows DuckDB loads the new shards with ``INSERT … SELECT … FROM read_parquet(…) ON CONFLICT
   DO NOTHING``, so a killed run resumes where it stopped.

Sources (image paths) must be readable on the workers: same machine, a shared filesystem, or a mounted bucket.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workbench import store
from workbench.run.encoding import Cancelled, EncodeStats, decode_side, read_cache, uncached_items

ProgressFn = Callable[[int, int], None]
INSTALL_HINT = "pip install -r requirements-scale.txt"
ENV_CONCURRENCY = "WORKBENCH_RAY_CONCURRENCY"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_OUT_SCHEMA = pa.schema([("content_hash", pa.string()), ("vector", pa.binary()), ("tokens", pa.binary())])


def import_ray() -> Any:
    """``ray`` (with Ray Data), or an ImportError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"The Ray backend needs Ray Data, which is not installed: {INSTALL_HINT}") from exc
    return ray


def ensure_ray(address: str | None = None) -> Any:
    """Connect to ``address`` (``ray://HOST:10001``, ``auto``, ``HOST:6379``) or start a local instance, once."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
                 runtime_env=_runtime_env(address))
    return ray


def _runtime_env(address: str | None) -> dict:
    """How workers import ``workbench``: the package is uploaded for a remote cluster, found on disk locally."""
    if address:
        return {"py_modules": [str(_PACKAGE_DIR)], "env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    path = os.pathsep.join(p for p in (str(_PACKAGE_DIR.parent), os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false"}}


def cluster_gpus(ray: Any) -> float | None:
    """GPUs the cluster advertises, or None when it cannot say."""
    try:
        return float(ray.cluster_resources().get("GPU", 0.0))
    except Exception:
        return None


def plan_actors(ray: Any, *, concurrency: int | None = None, device_type: str = "auto") -> dict:
    """Actor-pool resources: one GPU per actor when the driver or the cluster has GPUs, else one CPU per actor.

    ``concurrency`` defaults to the number of GPUs, or for CPU actors to the cluster's CPUs less one (the Parquet
    read tasks need a CPU), at least 1; ``$WORKBENCH_RAY_CONCURRENCY`` overrides the default.
    """
    import torch

    gpus = cluster_gpus(ray)
    # The driver's own GPU counts only when the cluster cannot list its resources: asking a CPU-only cluster for
    # GPU actors would wait forever.
    use_gpu = device_type != "cpu" and (bool(gpus) if gpus is not None else torch.cuda.is_available())
    if concurrency is None and os.environ.get(ENV_CONCURRENCY):
        concurrency = int(os.environ[ENV_CONCURRENCY])
    if concurrency is None:
        if use_gpu:
            concurrency = max(1, int(gpus or 0) or torch.cuda.device_count())
        else:
            try:
                cpus = int(ray.cluster_resources().get("CPU", 2))
            except Exception:
                cpus = 2
            concurrency = max(1, cpus - 1)
    if int(concurrency) < 1:
        raise ValueError(f"concurrency={concurrency!r} must be >= 1")
    return {"use_gpu": use_gpu, "concurrency": int(concurrency), "num_gpus": 1 if use_gpu else 0,
            "num_cpus": 1}


class EncodeActor:
    """One model per Ray actor; ``__call__`` turns a (content_hash, source) batch into stored-format rows."""

    def __init__(self, encoder: Any, use_gpu: bool, tokens: bool, torch_threads: int = 1) -> None:
        import torch

        from workbench.run.device import resolve_device

        torch.set_num_threads(max(1, torch_threads))  # one actor per CPU: no oversubscription
        ray = import_ray()
        self.encoder = ray.get(encoder) if isinstance(encoder, ray.ObjectRef) else encoder  # one shared copy
        self.device = resolve_device("cuda" if use_gpu else "cpu")
        self.tokens = tokens
        self.max_side = decode_side(encoder)

    def _forward(self, sources: Sequence[str]) -> tuple[np.ndarray, list[bytes] | None]:
        from workbench.run.encoding import encode_batch, load_items

        batch = self.encoder.preprocess(load_items(self.encoder.modality, list(sources), self.max_side))
        return encode_batch(self.encoder, batch, self.device, tokens=self.tokens)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from workbench.run.device import run_with_backoff

        sources = batch.column("source").to_pylist()
        parts, _ = run_with_backoff(self._forward, sources, len(sources))  # halves the batch on out-of-memory
        vectors = np.ascontiguousarray(np.concatenate([p[0] for p in parts]), dtype=np.float32)
        blobs = [b for p in parts for b in p[1]] if self.tokens else None
        return pa.table({
            "content_hash": batch.column("content_hash"),
            "vector": pa.array([row.tobytes() for row in vectors], pa.binary()),
            "tokens": pa.array(blobs, pa.binary()) if blobs is not None else pa.nulls(len(sources), pa.binary()),
        }, schema=_OUT_SCHEMA)


def _write_input_shards(todo: list[tuple[str, str]], folder: Path, rows_per_shard: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(0, len(todo), rows_per_shard):
        chunk = todo[i : i + rows_per_shard]
        path = folder / f"input-{i // rows_per_shard:05d}.parquet"
        pq.write_table(pa.table({"content_hash": [h for h, _ in chunk], "source": [s for _, s in chunk]},
                                schema=pa.schema([("content_hash", pa.string()), ("source", pa.string())])), path)
        paths.append(str(path))
    return paths


def _sql_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def load_shards_into_cache(db: Any, cache_key: str, paths: Sequence[str]) -> None:
    """Insert encoded Parquet shards into ``embedding_cache``; DuckDB reads the Parquet files directly."""
    if not paths:
        return
    with store.connect(db) as con, store.transaction(con):
        con.execute(
            "INSERT INTO embedding_cache SELECT ?::VARCHAR AS encoder_fp, content_hash, vector, tokens "
            f"FROM read_parquet({_sql_list(paths)}) ON CONFLICT DO NOTHING",
            [cache_key],
        )


def encode_with_ray(
    encoder: Any,
    sources: Sequence[str],
    hashes: Sequence[str],
    *,
    db: Any,
    cache_key: str,
    device_type: str = "auto",
    batch_size: int = 64,
    tokens: bool = False,
    ray_address: str | None = None,
    concurrency: int | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    load_every: int = 4096,
    keep_shards: bool = False,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, list | None, EncodeStats]:
    """Encode the uncached items on Ray and return all vectors (and tokens) aligned with ``hashes``.

    ``device_type`` ``"cpu"`` forces CPU actors; otherwise actors take one GPU each when any is visible. Shards live
    in ``work_dir`` (default: a temporary folder) and are removed once loaded unless ``keep_shards``; after a
    failure they stay for inspection. Returns ``(vectors, tokens or None, EncodeStats)``.
    """
    start = time.perf_counter()
    stats = EncodeStats(n_items=len(hashes), batch_size=batch_size)
    todo, stats.n_cached = uncached_items(db, cache_key, hashes, sources)
    if progress:
        progress(0, len(todo))
    if todo:
        folder = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="workbench-ray-"))
        _run_pipeline(encoder, todo, folder, db=db, cache_key=cache_key, device_type=device_type,
                      batch_size=batch_size, tokens=tokens, ray_address=ray_address, concurrency=concurrency,
                      load_every=load_every, stats=stats, progress=progress, cancel=cancel)
        if not keep_shards:
            shutil.rmtree(folder, ignore_errors=True)
    vectors, token_list = read_cache(db, cache_key, list(hashes), tokens=tokens)
    stats.seconds = time.perf_counter() - start
    return vectors, token_list, stats


def _run_pipeline(encoder: Any, todo: list[tuple[str, str]], folder: Path, *, db: Any, cache_key: str,
                  device_type: str, batch_size: int, tokens: bool, ray_address: str | None,
                  concurrency: int | None, load_every: int, stats: EncodeStats, progress: ProgressFn | None,
                  cancel: threading.Event | None) -> None:
    ray = ensure_ray(ray_address)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the runner reports progress itself
    plan = plan_actors(ray, concurrency=concurrency, device_type=device_type)
    # Enough shards that every actor has blocks queued, few enough that per-block overhead stays small.
    rows_per_shard = max(batch_size, min(50_000, -(-len(todo) // (plan["concurrency"] * 4))))
    inputs = _write_input_shards(todo, folder / "input", rows_per_shard)
    out_dir = folder / "encoded"
    out_dir.mkdir(parents=True, exist_ok=True)
    # Input rows are tiny (hash + path or text), so the driver reads its own shards and hands them to the object
    # store as one block each: workers then need no access to this folder (ray:// clients, no shared storage), and
    # it sidesteps read_parquet failing in Ray 2.60 when fsspec is installed without aiohttp.
    dataset = ray.data.from_arrow([pq.read_table(p) for p in inputs])
    encoded = dataset.map_batches(
        EncodeActor,
        fn_constructor_args=(ray.put(encoder), plan["use_gpu"], tokens, plan["num_cpus"]),
        batch_size=batch_size,
        batch_format="pyarrow",
        zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(size=plan["concurrency"]),
        num_gpus=plan["num_gpus"],
        num_cpus=plan["num_cpus"],
        runtime_env=_runtime_env(ray_address),
    )
    pending: list[str] = []
    pending_rows = 0
    shard = 0
    try:
        for block in encoded.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
            if block.num_rows == 0:
                continue
            path = out_dir / f"encoded-{shard:05d}.parquet"
            pq.write_table(block.select(_OUT_SCHEMA.names).cast(_OUT_SCHEMA), path)
            shard += 1
            pending.append(str(path))
            pending_rows += block.num_rows
            stats.n_encoded += block.num_rows
            stats.n_forward_calls += -(-block.num_rows // batch_size)
            if pending_rows >= load_every:
                load_shards_into_cache(db, cache_key, pending)
                pending, pending_rows = [], 0
            if progress:
                progress(stats.n_encoded, len(todo))
            if cancel is not None and cancel.is_set():
                raise Cancelled("Run cancelled while encoding on Ray.")
    finally:
        load_shards_into_cache(db, cache_key, pending)  # keep finished work, also when cancelled or failed
