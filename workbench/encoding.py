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


# Item lists travel as list parameters (unnest(?)), not as registered Python objects: DuckDB's Python scans were
# seen to fail intermittently ("python_arrow_scan does not exist") when many threads of one process connect.
def cached_hashes(db, cache_key: str, hashes: Sequence[str]) -> set[str]:
    with store.connect(db) as con:
        rows = con.execute(
            "SELECT content_hash FROM embedding_cache WHERE encoder_fp = ? "
            "AND content_hash IN (SELECT unnest(?::VARCHAR[]))",
            [cache_key, list(dict.fromkeys(hashes))],
        ).fetchall()
    return {r[0] for r in rows}


def uncached_items(db, cache_key: str, hashes: Sequence[str], sources: Sequence[str]) -> tuple[list, int]:
    """The distinct (hash, source) items not in the cache yet, and how many distinct items already are."""
    unique: dict[str, str] = dict(zip(hashes, sources, strict=True))
    have = cached_hashes(db, cache_key, list(unique))
    todo = [(h, s) for h, s in unique.items() if h not in have]
    return todo, len(unique) - len(todo)


def read_cache(db, cache_key: str, hashes: Sequence[str], *, tokens: bool) -> tuple[np.ndarray, list | None]:
    """Vectors (and token arrays) for ``hashes``, in the given order."""
    with store.connect(db) as con:
        rows = con.execute(
            f"SELECT content_hash, vector{', tokens' if tokens else ''} FROM embedding_cache WHERE encoder_fp = ? "
            "AND content_hash IN (SELECT unnest(?::VARCHAR[]))",
            [cache_key, list(dict.fromkeys(hashes))],
        ).fetchall()
    found = {r[0]: r[1:] for r in rows}
    missing = len(set(hashes) - found.keys())
    if missing:
        raise RuntimeError(f"Embedding cache is missing {missing} items for {cache_key}.")
    vectors = np.frombuffer(b"".join(found[h][0] for h in hashes), dtype=np.float32).reshape(len(hashes), -1)
    token_list = [blob_to_tokens(found[h][1]) for h in hashes] if tokens else None
    return vectors.copy(), token_list


def write_cache(db, cache_key: str, hashes: list[str], vectors: np.ndarray, blobs: list[bytes] | None) -> None:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    with store.connect(db) as con:
        store.execute_retrying(
            con,
            "INSERT INTO embedding_cache SELECT ?, unnest(?::VARCHAR[]), unnest(?::BLOB[]), unnest(?::BLOB[]) "
            "ON CONFLICT DO NOTHING",
            [cache_key, list(hashes), [row.tobytes() for row in vectors],
             list(blobs) if blobs is not None else [None] * len(hashes)],
        )


def encode_batch(encoder, batch, device: torch.device, *, tokens: bool) -> tuple[np.ndarray, list[bytes] | None]:
    """One forward pass (mixed precision on GPU): float32 vectors and, if asked, token blobs for the cache."""
    with torch.inference_mode(), autocast_context(device):
        vectors = encoder.forward(batch, device).float().cpu().numpy()
        if not tokens:
            return vectors, None
        toks, mask = encoder.forward_tokens(batch, device)
        toks, mask = toks.float().cpu().numpy(), mask.cpu().numpy().astype(bool)
    return vectors, [tokens_to_blob(t, m) for t, m in zip(toks, mask, strict=True)]


def decode_side(encoder) -> int:
    """Images are decoded (JPEG draft + thumbnail) to at most this many pixels on the long side."""
    return max(int(getattr(encoder, "image_size", 224) or 224), 256)


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
    todo, stats.n_cached = uncached_items(db, cache_key, hashes, sources)
    max_side = decode_side(encoder)

    def prepare(chunk: Sequence[tuple[str, str]]):
        return encoder.preprocess(load_items(encoder.modality, [s for _, s in chunk], max_side))

    def forward(batch) -> tuple[np.ndarray, list[bytes] | None]:
        stats.n_forward_calls += 1
        return encode_batch(encoder, batch, device, tokens=tokens)

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
            writes.append(writer.submit(write_cache, db, cache_key, list(pending_h), np.concatenate(pending_v),
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
