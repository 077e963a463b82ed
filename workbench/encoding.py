"""Encoding with an embedding cache in DuckDB keyed by (encoder fingerprint, item content hash).

Items are decoded and preprocessed in worker threads while the model runs the previous batch; vectors are written
to the cache batch by batch, so a killed run resumes where it stopped and nothing is encoded twice.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from workbench import store
from workbench.data.images import load_image
from workbench.device import autocast_context, is_oom, run_with_backoff

ProgressFn = Callable[[int, int], None]


class Cancelled(Exception):
    """The user asked the run to stop."""


@dataclass
class EncodeStats:
    n_items: int = 0
    n_cached: int = 0
    n_encoded: int = 0
    n_forward_calls: int = 0
    batch_size: int = 0
    seconds: float = 0.0


def tokens_to_blob(tokens: np.ndarray, mask: np.ndarray) -> bytes:
    """Token-level outputs as ``.npy`` bytes (float16 tokens + mask), loaded back without pickle."""
    buffer = io.BytesIO()
    length = int(mask.sum()) if mask.any() else 1
    np.save(buffer, tokens[:length].astype(np.float16), allow_pickle=False)
    return buffer.getvalue()


def blob_to_tokens(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False).astype(np.float32)


def pad_tokens(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length (L_i, D) arrays into (N, L, D) with a boolean mask."""
    longest = max(len(s) for s in seqs)
    dim = seqs[0].shape[1]
    out = np.zeros((len(seqs), longest, dim), dtype=np.float32)
    mask = np.zeros((len(seqs), longest), dtype=bool)
    for i, seq in enumerate(seqs):
        out[i, : len(seq)] = seq
        mask[i, : len(seq)] = True
    return out, mask


def cached_hashes(db, cache_key: str, hashes: Sequence[str]) -> set[str]:
    wanted = pa.table({"content_hash": pa.array(list(dict.fromkeys(hashes)), pa.string())})
    with store.connect(db) as con:
        con.register("_wanted", wanted)
        rows = con.execute(
            "SELECT c.content_hash FROM embedding_cache c JOIN _wanted w USING (content_hash) "
            "WHERE c.encoder_fp = ?",
            [cache_key],
        ).fetchall()
    return {r[0] for r in rows}


def read_cache(db, cache_key: str, hashes: Sequence[str], *, tokens: bool) -> tuple[np.ndarray, list | None]:
    """Vectors (and token arrays) for ``hashes``, in the given order."""
    wanted = pa.table({"content_hash": pa.array(list(hashes), pa.string()), "pos": np.arange(len(hashes))})
    with store.connect(db) as con:
        con.register("_wanted", wanted)
        columns = "c.vector, c.tokens" if tokens else "c.vector"
        rows = con.sql(
            f"SELECT w.pos, {columns} FROM _wanted w JOIN embedding_cache c "
            "ON c.content_hash = w.content_hash AND c.encoder_fp = ? ORDER BY w.pos",
            params=[cache_key],
        ).to_arrow_table()
    if rows.num_rows != len(hashes):
        raise RuntimeError(f"Embedding cache is missing {len(hashes) - rows.num_rows} items for {cache_key}.")
    blobs = rows.column("vector").to_pylist()
    vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1) if blobs else np.zeros((0, 0))
    token_list = [blob_to_tokens(b) for b in rows.column("tokens").to_pylist()] if tokens else None
    return vectors.copy(), token_list


def _write_cache(db, cache_key: str, hashes: list[str], vectors: np.ndarray, blobs: list[bytes] | None) -> None:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    table = pa.table({
        "encoder_fp": pa.array([cache_key] * len(hashes), pa.string()),
        "content_hash": pa.array(hashes, pa.string()),
        "vector": pa.array([row.tobytes() for row in vectors], pa.binary()),
        "tokens": pa.array(blobs, pa.binary()) if blobs is not None else pa.nulls(len(hashes), pa.binary()),
    })
    with store.connect(db) as con, store.transaction(con):
        con.register("_new", table)
        con.execute("INSERT INTO embedding_cache SELECT * FROM _new ON CONFLICT DO NOTHING")


def load_items(modality: str, sources: Sequence[str], max_side: int) -> list:
    """Image paths → reduced-size RGB images; texts pass through."""
    if modality == "image":
        return [load_image(path, max_side=max_side) for path in sources]
    return list(sources)


def encode_with_cache(
    encoder,
    sources: Sequence[str],
    hashes: Sequence[str],
    *,
    db,
    cache_key: str,
    device: torch.device,
    batch_size: int = 64,
    tokens: bool = False,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    write_every: int = 512,
) -> tuple[np.ndarray, list | None, EncodeStats]:
    """Encode the items not yet in the cache and return all vectors (and tokens) aligned with ``hashes``.

    ``sources`` are image paths or texts; items with equal content hashes are encoded once.
    """
    start = time.perf_counter()
    stats = EncodeStats(n_items=len(hashes), batch_size=batch_size)
    unique: dict[str, str] = dict(zip(hashes, sources, strict=True))
    have = cached_hashes(db, cache_key, list(unique))
    todo = [(h, s) for h, s in unique.items() if h not in have]
    stats.n_cached = len(unique) - len(todo)
    max_side = max(int(getattr(encoder, "image_size", 224) or 224), 256)

    def prepare(chunk: Sequence[tuple[str, str]]):
        return encoder.preprocess(load_items(encoder.modality, [s for _, s in chunk], max_side))

    def forward(batch) -> tuple[np.ndarray, list[bytes] | None]:
        stats.n_forward_calls += 1
        with torch.inference_mode(), autocast_context(device):
            vectors = encoder.forward(batch, device).float().cpu().numpy()
            if not tokens:
                return vectors, None
            toks, mask = encoder.forward_tokens(batch, device)
            toks, mask = toks.float().cpu().numpy(), mask.cpu().numpy().astype(bool)
        return vectors, [tokens_to_blob(t, m) for t, m in zip(toks, mask, strict=True)]

    def forward_with_backoff(chunk: Sequence[tuple[str, str]]) -> tuple[np.ndarray, list[bytes] | None]:
        parts, stats.batch_size = run_with_backoff(lambda c: forward(prepare(c)), chunk, stats.batch_size)
        blobs = [b for p in parts for b in p[1]] if tokens else None
        return np.concatenate([p[0] for p in parts]), blobs

    done = 0
    pending_h: list[str] = []
    pending_v: list[np.ndarray] = []
    pending_b: list[bytes] = []

    writer = ThreadPoolExecutor(max_workers=1)  # one writer, so cache writes overlap the next forward passes
    writes: list = []

    def flush() -> None:
        if pending_h:
            writes.append(writer.submit(_write_cache, db, cache_key, list(pending_h), np.concatenate(pending_v),
                                        list(pending_b) if tokens else None))
            pending_h.clear()
            pending_v.clear()
            pending_b.clear()

    def finish_writes() -> None:
        writer.shutdown(wait=True)
        for write in writes:
            write.result()  # re-raise a failed write

    if progress:
        progress(0, len(todo))
    workers = workers or min(8, os.cpu_count() or 1)
    depth = workers + 1  # batches decoded ahead of the model, so decoding overlaps the forward pass
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        futures = [pool.submit(prepare, c) for c in chunks[:depth]]
        for index, chunk in enumerate(chunks):
            if cancel is not None and cancel.is_set():
                for f in futures:
                    f.cancel()
                flush()
                finish_writes()
                raise Cancelled("Run cancelled while encoding.")
            batch = futures[index].result()
            if index + depth < len(chunks):
                futures.append(pool.submit(prepare, chunks[index + depth]))
            if len(chunk) > stats.batch_size:  # an earlier batch ran out of memory
                vectors, blobs = forward_with_backoff(chunk)
            else:
                try:
                    vectors, blobs = forward(batch)
                except Exception as exc:
                    if not is_oom(exc) or len(chunk) == 1:
                        raise
                    stats.batch_size = max(1, len(chunk) // 2)
                    vectors, blobs = forward_with_backoff(chunk)
            pending_h.extend(h for h, _ in chunk)
            pending_v.append(vectors)
            if blobs:
                pending_b.extend(blobs)
            done += len(chunk)
            stats.n_encoded += len(chunk)
            if len(pending_h) >= write_every:
                flush()
            if progress:
                progress(done, len(todo))
    flush()
    finish_writes()
    vectors, token_list = read_cache(db, cache_key, list(hashes), tokens=tokens)
    stats.seconds = time.perf_counter() - start
    return vectors, token_list, stats
