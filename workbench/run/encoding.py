"""Encoding with an embedding cache in DuckDB keyed by (encoder fingerprint, item content hash).

Inputs are prepared ahead of the model (:class:`InputPipeline`): images one task per image on every core (or batched
on the GPU, :mod:`~workbench.run.decode`), their pixels read from and written to the decoded-pixel cache
(:mod:`~workbench.run.pixel_cache`); texts tokenised by one producer thread in batches sorted by length within a
window. Vectors are written to the cache batch by batch, so a killed run resumes where it stopped and nothing is
encoded twice; results come back in the order of the given hashes whatever order the batches ran in.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from workbench import store
from workbench.data.images import PixelSpec, load_image
from workbench.run.decode import (
    GpuJpegDecoder,
    decode_pixels,
    decode_workers,
    fixed_pixel_spec,
    gpu_decode_available,
    read_for_gpu,
)
from workbench.run.device import (
    ForwardOptions,
    autocast_context,
    inference_modules,
    is_oom,
    probe_batch_size,
    run_with_backoff,
)
from workbench.run.pixel_cache import PixelCache, policy_key

ProgressFn = Callable[[int, int], None]


class Cancelled(Exception):
    """The user asked the run to stop."""


SORT_WINDOW_BATCHES = 16  # texts are sorted by length within windows of this many batches


@dataclass
class EncodeStats:
    """What one encoding did; :meth:`timings` is the part a run records (keys only ever added)."""

    n_items: int = 0
    n_cached: int = 0
    n_encoded: int = 0
    n_forward_calls: int = 0
    batch_size: int = 0
    seconds: float = 0.0
    decoder: str = ""  # "cpu-pixels", "gpu-pixels", "cpu-pil" or "tokenizer"
    decode_s: float = 0.0  # summed over the decode threads (thread-seconds)
    n_decoded: int = 0
    n_gpu_decoded: int = 0
    n_gpu_fallback: int = 0
    pixel_cache_hits: int = 0
    pixel_cache_writes: int = 0
    input_wait_s: float = 0.0  # time the model waited for its next batch
    forward_s: float = 0.0

    def timings(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("n_items", "n_cached", "n_encoded", "n_forward_calls", "batch_size", "seconds"):
            out.pop(key)  # recorded under their established names by the runner
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


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


def length_sorted(todo: Sequence[tuple[str, str]], batch_size: int) -> list[tuple[str, str]]:
    """Texts reordered by length within windows of ``SORT_WINDOW_BATCHES`` batches, so each batch pads to a
    similar length; the window bounds how far an item moves (and how much is held back)."""
    window = max(1, batch_size * SORT_WINDOW_BATCHES)
    return [item for start in range(0, len(todo), window)
            for item in sorted(todo[start : start + window], key=lambda item: len(item[1]))]


def tile_batch(batch: Any, n: int) -> Any:
    """A batch of ``n`` rows made by repeating ``batch`` (tensors, arrays, and dicts/tuples/lists of them, or a
    list of items): what batch-size probing feeds the model."""
    if isinstance(batch, dict):
        return {key: tile_batch(value, n) for key, value in batch.items()}
    if isinstance(batch, torch.Tensor):
        reps = math.ceil(n / len(batch))
        return batch.repeat(reps, *([1] * (batch.ndim - 1)))[:n]
    if isinstance(batch, np.ndarray):
        return np.concatenate([batch] * math.ceil(n / len(batch)))[:n]
    if isinstance(batch, (tuple, list)) and batch and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in batch):
        return type(batch)(tile_batch(value, n) for value in batch)
    if isinstance(batch, list) and batch:
        return (batch * math.ceil(n / len(batch)))[:n]
    raise TypeError(f"cannot tile a batch of type {type(batch).__name__} to probe the batch size")


@dataclass
class _Prepared:
    """One model batch and what preparing it cost."""

    batch: Any
    decode_s: float = 0.0
    n_decoded: int = 0
    n_gpu: int = 0
    n_fallback: int = 0
    hits: int = 0
    writes: int = 0


class InputPipeline:
    """Batches prepared ahead of the model: per-item tasks on ``workers`` decode threads, and one producer thread
    that assembles each batch in order (workers write their pixels straight into the batch's own buffer, pinned on
    CUDA) and, for texts, tokenises whole batches with the encoder's batched call. The producer is the only thread
    that tokenises, so the tokenizer is never contended, and the thread that drives the model only waits and runs
    it."""

    def __init__(self, encoder, device: torch.device, *, workers: int, pixel_cache: PixelCache | None,
                 gpu_decode: bool = True, gpu_decode_fn=None) -> None:
        self.encoder = encoder
        self.text = encoder.modality == "text"
        self.max_side = decode_side(encoder)
        self.spec: PixelSpec | None = None if self.text else fixed_pixel_spec(encoder)
        self.cache = pixel_cache if self.spec is not None else None
        self.policy = policy_key(self.spec, self.max_side) if self.cache is not None else ""
        self.gpu: GpuJpegDecoder | None = None
        if self.spec is not None and (gpu_decode_fn is not None or (gpu_decode and gpu_decode_available(device))):
            self.gpu = GpuJpegDecoder(self.spec, self.max_side, device, decode_fn=gpu_decode_fn)
        self.pin = device.type == "cuda"
        # GPU decoding runs on its own stream, so it overlaps the model's kernels on the default stream
        self.stream = torch.cuda.Stream(device) if self.gpu is not None and device.type == "cuda" else None
        self.decoder = ("tokenizer" if self.text else "gpu-pixels" if self.gpu else
                        "cpu-pixels" if self.spec is not None else "cpu-pil")
        self.pool = None if self.text else ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self.producer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inputs")

    def __enter__(self) -> InputPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.producer.shutdown(wait=True, cancel_futures=True)
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, chunk: Sequence[tuple[str, str]]) -> Future:
        """A future of the chunk's :class:`_Prepared`, in submission order."""
        if self.text:
            return self.producer.submit(lambda: _Prepared(self.encoder.preprocess([s for _, s in chunk])))
        if self.spec is None:
            items = [self.pool.submit(self._pil, source) for _, source in chunk]
            return self.producer.submit(self._pil_batch, items)
        if self.gpu is not None:
            items = [self.pool.submit(self._read, h, source) for h, source in chunk]
            return self.producer.submit(self._gpu_batch, [h for h, _ in chunk], items)
        buffer = torch.empty((len(chunk), *self.spec.shape, 3), dtype=torch.uint8, pin_memory=self.pin)
        view = buffer.numpy()
        items = [self.pool.submit(self._pixels, h, source, view, i) for i, (h, source) in enumerate(chunk)]
        return self.producer.submit(self._pixel_batch, buffer, items)

    # ------------------------------------------------------------------------------- per-item tasks (workers)
    def _pil(self, source: str) -> tuple[Any, float]:
        start = time.perf_counter()
        image = load_image(source, max_side=self.max_side)
        return image, time.perf_counter() - start

    def _cached(self, content_hash: str) -> np.ndarray | None:
        if self.cache is None:
            return None
        pixels = self.cache.get(self.policy, content_hash)
        return pixels if pixels is not None and pixels.shape[:2] == self.spec.shape else None

    def _pixels(self, content_hash: str, source: str, out: np.ndarray, index: int) -> tuple[float, bool, bool]:
        start = time.perf_counter()
        cached = self._cached(content_hash)
        if cached is not None:
            out[index] = cached
            return time.perf_counter() - start, True, False
        pixels = decode_pixels(source, self.max_side, self.spec)
        out[index] = pixels
        wrote = self.cache is not None and self.cache.put(self.policy, content_hash, pixels)
        return time.perf_counter() - start, False, wrote

    def _read(self, content_hash: str, source: str) -> tuple[Any, float, bool]:
        start = time.perf_counter()
        cached = self._cached(content_hash)
        item = cached if cached is not None else read_for_gpu(source, self.max_side, self.spec)
        return item, time.perf_counter() - start, cached is not None

    # ------------------------------------------------------------------------ batch assembly (producer thread)
    def _pil_batch(self, items: list[Future]) -> _Prepared:
        results = [f.result() for f in items]
        batch = self.encoder.preprocess([image for image, _ in results])
        return _Prepared(batch, decode_s=sum(s for _, s in results), n_decoded=len(results))

    def _pixel_batch(self, buffer: torch.Tensor, items: list[Future]) -> _Prepared:
        results = [f.result() for f in items]
        hits = sum(hit for _, hit, _ in results)
        return _Prepared(self.encoder.batch_from_pixels(buffer), decode_s=sum(s for s, _, _ in results),
                         n_decoded=len(results) - hits, hits=hits, writes=sum(w for _, _, w in results))

    def _gpu_batch(self, hashes: list[str], items: list[Future]) -> _Prepared:
        results = [f.result() for f in items]
        start = time.perf_counter()
        with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
            decoded = self.gpu([item for item, _, _ in results])
        if self.stream is not None:
            self.stream.synchronize()  # this thread waits; the model's stream never does
        seconds = time.perf_counter() - start
        hits = sum(hit for _, _, hit in results)
        writes = 0
        if self.cache is not None and hits < len(results):
            host = decoded.pixels.cpu().numpy()  # this thread waits for the copy, the model does not; writes are
            # queued behind the decode tasks and counted as queued
            for i, (h, (_, _, hit)) in enumerate(zip(hashes, results, strict=True)):
                if not hit:
                    self.pool.submit(self.cache.put, self.policy, h, host[i])
                    writes += 1
        if decoded.pixels.is_cuda:  # allocated here, read by the model's stream
            decoded.pixels.record_stream(torch.cuda.default_stream(decoded.pixels.device))
        return _Prepared(self.encoder.batch_from_pixels(decoded.pixels),
                         decode_s=sum(s for _, s, _ in results) + seconds, n_decoded=len(results) - hits,
                         n_gpu=decoded.n_gpu, n_fallback=decoded.n_fallback, hits=hits, writes=writes)


def _prefetch_depth(workers: int, batch_size: int) -> int:
    """Batches prepared ahead of the model: enough queued images to keep every decode thread busy."""
    return max(2, math.ceil(4 * workers / max(1, batch_size)))


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
    pixel_cache: PixelCache | None = None,
    forward_options: ForwardOptions | None = None,
    gpu_decode: bool = True,
    gpu_decode_fn=None,
) -> tuple[np.ndarray, list | None, EncodeStats]:
    """Encode the items not yet in the cache and return all vectors (and tokens) aligned with ``hashes``.

    ``sources`` are image paths or texts; items with equal content hashes are encoded once. ``pixel_cache`` reuses
    decoded pixels across image encoders of the same input; ``forward_options`` sets up the GPU forward
    (:class:`~workbench.run.device.ForwardOptions`; nothing changes on the CPU); ``gpu_decode`` decodes JPEGs on the
    GPU when CUDA and torchvision are there; ``gpu_decode_fn`` replaces torchvision's batched JPEG decoder (tests
    use it to run the GPU path's logic on the CPU).
    """
    start = time.perf_counter()
    stats = EncodeStats(n_items=len(hashes), batch_size=batch_size)
    todo, stats.n_cached = uncached_items(db, cache_key, hashes, sources)
    workers = workers or decode_workers()
    if encoder.modality == "text":
        todo = length_sorted(todo, batch_size)

    def forward(batch) -> tuple[np.ndarray, list[bytes] | None]:
        stats.n_forward_calls += 1
        return encode_batch(encoder, batch, device, tokens=tokens)

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

    def count(prepared: _Prepared) -> _Prepared:
        stats.decode_s += prepared.decode_s
        stats.n_decoded += prepared.n_decoded
        stats.n_gpu_decoded += prepared.n_gpu
        stats.n_gpu_fallback += prepared.n_fallback
        stats.pixel_cache_hits += prepared.hits
        stats.pixel_cache_writes += prepared.writes
        return prepared

    if progress:
        progress(0, len(todo))
    pipeline = InputPipeline(encoder, device, workers=workers, pixel_cache=pixel_cache, gpu_decode=gpu_decode,
                             gpu_decode_fn=gpu_decode_fn)
    with pipeline as inputs, inference_modules(encoder, device, forward_options):
        stats.decoder = inputs.decoder

        def forward_with_backoff(chunk: Sequence[tuple[str, str]]) -> tuple[np.ndarray, list[bytes] | None]:
            parts, stats.batch_size = run_with_backoff(
                lambda c: forward(count(inputs.submit(c).result()).batch), chunk, stats.batch_size)
            blobs = [b for p in parts for b in p[1]] if tokens else None
            return np.concatenate([p[0] for p in parts]), blobs

        chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        futures: dict[int, Future] = {}
        probe = forward_options is not None and forward_options.probe_batch and device.type == "cuda"
        if probe and len(chunks) > 4:  # a larger batch fills the GPU better; found on the first real batch
            futures[0] = inputs.submit(chunks[0])
            first = futures[0].result().batch
            stats.batch_size = probe_batch_size(
                lambda n: encode_batch(encoder, tile_batch(first, n), device, tokens=tokens), batch_size,
                limit=min(forward_options.max_batch, len(todo)), device=device)
            rest = todo[len(chunks[0]) :]
            chunks = chunks[:1] + [rest[i : i + stats.batch_size] for i in range(0, len(rest), stats.batch_size)]
        depth = _prefetch_depth(workers, stats.batch_size)
        for index, chunk in enumerate(chunks):
            for ahead in range(index, min(index + depth + 1, len(chunks))):
                if ahead not in futures:
                    futures[ahead] = inputs.submit(chunks[ahead])
            if cancel is not None and cancel.is_set():
                for f in futures.values():
                    f.cancel()
                flush()
                finish_writes()
                raise Cancelled("Run cancelled while encoding.")
            waited = time.perf_counter()
            prepared = count(futures.pop(index).result())
            began = time.perf_counter()
            stats.input_wait_s += began - waited
            if len(chunk) > stats.batch_size:  # an earlier batch ran out of memory
                vectors, blobs = forward_with_backoff(chunk)
            else:
                try:
                    vectors, blobs = forward(prepared.batch)
                except Exception as exc:
                    if not is_oom(exc) or len(chunk) == 1:
                        raise
                    stats.batch_size = max(1, len(chunk) // 2)
                    vectors, blobs = forward_with_backoff(chunk)
            stats.forward_s += time.perf_counter() - began
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
