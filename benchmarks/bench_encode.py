"""Encoding throughput: forward-only, decode-only ceiling and end to end, measured side by side in one run.

    python -m benchmarks.bench_encode [--json] [--device auto] [--images N] [--texts N] [--models vit-b16,vit-b32]

Per image model (random-weight ViT-B/16 and B/32 at 224 px; ~1-megapixel JPEGs):

- ``forward``: the model alone on pre-decoded pixel batches (set up as runs set it up: bf16 weights on GPU);
- ``decode``: the input pipeline alone (every core, or batched GPU decoding; no model) — the decode ceiling;
- ``end_to_end``: JPEG file → vector stored in the DuckDB cache (``encode_with_cache``, decoded pixels written
  to a fresh pixel cache as runs do);
- ``ratio`` = end_to_end ÷ forward (median over rounds that run the two back to back; ``ratio_of_best`` divides
  the best times), ``ratio_vs_bound`` = end_to_end ÷ min(forward, decode).

``cached_decode_ratio``: B/32 end to end ÷ forward with every image's pixels already in the pixel cache (a second
image encoder of the same input size after B/16). ``text``: MiniLM (the bundled package, else a MiniLM-sized random
BERT) with tokenising as its "decode". ``cache_write_ratio``: DuckDB cache insert rate (rows/s) ÷ end-to-end rate,
the smallest over the three. Defaults: 20,000 images and 100,000 titles on GPU, 96 and 2,048 on CPU.
``--json`` prints one JSON object and nothing else.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from workbench.models import create_encoder
from workbench.run.decode import decode_workers
from workbench.run.device import ForwardOptions, inference_modules, resolve_device
from workbench.run.encoding import (
    InputPipeline,
    encode_batch,
    encode_with_cache,
    length_sorted,
    write_cache,
)
from workbench.run.pixel_cache import PixelCache

VITS = {"vit-b16": 16, "vit-b32": 32}
DISTINCT_PHOTOS = 2000  # larger sets repeat these files' bytes under new names (decode cost is per file)


def make_jpegs(folder: Path, n: int, size=(1152, 864)) -> list[str]:
    """``n`` ~1-megapixel JPEG photos (smooth random colour fields, quality 90), made on every core."""
    folder.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> bytes:
        small = np.random.default_rng(i).integers(0, 255, (9, 12, 3), dtype=np.uint8)
        path = folder / f"img{i:06d}.jpg"
        Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
        return path.read_bytes()

    with ThreadPoolExecutor(decode_workers()) as pool:
        distinct = list(pool.map(one, range(min(n, DISTINCT_PHOTOS))))
    for i in range(len(distinct), n):
        (folder / f"img{i:06d}.jpg").write_bytes(distinct[i % len(distinct)])
    return [str(folder / f"img{i:06d}.jpg") for i in range(n)]


def save_vit(folder: Path, patch: int) -> str:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    model = ViTModel(ViTConfig(patch_size=patch), add_pooling_layer=False)
    target = folder / f"vit-b{patch}"
    model.save_pretrained(target, safe_serialization=True)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(target)
    return str(target)


def text_encoder(folder: Path):
    """The real MiniLM when its package is installed, else a MiniLM-sized random BERT (timing is the same)."""
    try:
        from workbench.models.hf_loading import minilm_path

        minilm_path()
        return create_encoder("minilm"), "minilm"
    except Exception:
        from transformers import BertConfig, BertModel, BertTokenizerFast

        target = folder / "bert-minilm-size"
        target.mkdir()
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789", "红", "色"]
        (target / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        BertTokenizerFast(vocab_file=str(target / "vocab.txt")).save_pretrained(target)
        torch.manual_seed(0)
        config = BertConfig(vocab_size=len(vocab), hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                            intermediate_size=1536)
        BertModel(config, add_pooling_layer=False).save_pretrained(target, safe_serialization=True)
        return create_encoder("hf_text", model=str(target), pooling="mean"), "random MiniLM-sized BERT"


def titles(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    words = ["cotton", "t-shirt", "slim", "fit", "red", "blue", "绿色", "纯棉", "T恤", "summer", "men's", "women's",
             "size", "XL", "organic", "crew", "neck", "long", "sleeve", "pack", "of", "3"]
    return [f"Brand{i % 17} " + " ".join(rng.choice(words, int(rng.integers(3, 18)))) + f" {i}" for i in range(n)]


def seconds(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved(first, second, rounds: int) -> tuple[float, float, float]:
    """Best times of ``first`` and ``second`` run alternately, and the median of the per-round ratios
    second ÷ first: on a shared machine load drifts between minutes, rarely within one round."""
    a, b = [], []
    for _ in range(rounds):
        a.append(seconds(first))
        b.append(seconds(second))
    return min(a), min(b), float(np.median(np.array(a) / np.array(b)))


def prepared_batches(encoder, sources: list[str], hashes: list[str], device: torch.device, batch: int,
                     cache: PixelCache | None = None) -> list:
    """The input pipeline alone (no model), every batch kept."""
    with InputPipeline(encoder, device, workers=decode_workers(), pixel_cache=cache) as inputs:
        todo = list(zip(hashes, sources, strict=True))
        if encoder.modality == "text":
            todo = length_sorted(todo, batch)
        futures = [inputs.submit(todo[i : i + batch]) for i in range(0, len(todo), batch)]
        return [f.result().batch for f in futures]


def bench_side(encoder, sources: list[str], device: torch.device, batch: int, db: Path, tag: str,
               cache_root: Path, rounds: int = 3) -> dict:
    n = len(sources)
    options = ForwardOptions(probe_batch=False)
    warm = sources[: batch * 2]
    prepared_batches(encoder, warm, [f"warm{i}" for i in range(len(warm))], device, batch)
    decode_s = min(seconds(lambda: prepared_batches(encoder, sources, [f"{tag}-d{i}" for i in range(n)], device,
                                                    batch)) for _ in range(2))
    batches = prepared_batches(encoder, sources, [f"{tag}-f{i}" for i in range(n)], device, batch)

    def forward_only() -> None:
        with inference_modules(encoder, device, options):
            for b in batches:
                encode_batch(encoder, b, device, tokens=False)

    calls = [0]

    def end_to_end() -> None:  # fresh hashes and a fresh pixel cache: every item is decoded, encoded and stored
        calls[0] += 1
        cache = PixelCache(cache_root / f"{tag}-{calls[0]}")
        encode_with_cache(encoder, sources, [f"{tag}-{calls[0]}-{i}" for i in range(n)], db=db,
                          cache_key=f"bench-{tag}", device=device, batch_size=batch, pixel_cache=cache,
                          forward_options=options)

    forward_only()  # warm-up: weights on the device, kernels chosen
    forward_s, e2e_s, ratio = interleaved(forward_only, end_to_end, rounds)
    return {"items": n, "forward_per_s": n / forward_s, "decode_per_s": n / decode_s, "end_to_end_per_s": n / e2e_s,
            "ratio": ratio, "ratio_of_best": forward_s / e2e_s, "ratio_vs_bound": max(forward_s, decode_s) / e2e_s,
            "dim": int(encoder.dim)}


def bench_cached(encoder, paths: list[str], device: torch.device, batch: int, db: Path, cache: PixelCache,
                 rounds: int = 3) -> dict:
    """A second image encoder of the same input size: every image's pixels already in ``cache``."""
    n = len(paths)
    hashes = [f"shared-{i}" for i in range(n)]
    options = ForwardOptions(probe_batch=False)
    batches = prepared_batches(encoder, paths, hashes, device, batch, cache)  # fills the pixel cache

    def forward_only() -> None:
        with inference_modules(encoder, device, options):
            for b in batches:
                encode_batch(encoder, b, device, tokens=False)

    calls = [0]

    def end_to_end() -> None:
        calls[0] += 1
        _, _, stats = encode_with_cache(encoder, paths, hashes, db=db, cache_key=f"cached-{calls[0]}", device=device,
                                        batch_size=batch, pixel_cache=cache, forward_options=options)
        if stats.n_decoded:
            raise RuntimeError(f"expected every image from the pixel cache; {stats.n_decoded} were decoded")

    forward_only()
    forward_s, e2e_s, ratio = interleaved(forward_only, end_to_end, rounds)
    return {"forward_per_s": n / forward_s, "end_to_end_per_s": n / e2e_s, "ratio": ratio,
            "ratio_of_best": forward_s / e2e_s}


def insert_rate(db: Path, dim: int, rows: int = 20_000, chunk: int = 512) -> float:
    """DuckDB cache inserts per second, in the chunks ``encode_with_cache`` writes."""
    vectors = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    start = time.perf_counter()
    for i in range(0, rows, chunk):
        write_cache(db, f"insert-{dim}", [f"w{dim}-{j}" for j in range(i, min(rows, i + chunk))],
                    vectors[i : i + chunk], None)
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=None, help="default: 20000 on GPU, 96 on CPU")
    parser.add_argument("--texts", type=int, default=None, help="default: 100000 on GPU, 2048 on CPU")
    parser.add_argument("--batch", type=int, default=None, help="image batch; default 256 on GPU, 32 on CPU")
    parser.add_argument("--text-batch", type=int, default=None, help="default 1024 on GPU, 128 on CPU")
    parser.add_argument("--models", default="vit-b16,vit-b32")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    n_images = args.images or (20_000 if gpu else 96)
    n_texts = args.texts or (100_000 if gpu else 2048)
    batch = args.batch or (256 if gpu else 32)
    text_batch = args.text_batch or (1024 if gpu else 128)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    say(f"device: {device} ({torch.cuda.get_device_name() if gpu else 'CPU'}), torch threads "
        f"{torch.get_num_threads()}, decode threads {decode_workers()}")
    result: dict = {"device": str(device), "images": n_images, "texts": n_texts}
    tmp = Path(tempfile.mkdtemp(prefix="bench_encode-"))
    try:
        db = tmp / "bench.duckdb"
        paths = make_jpegs(tmp / "photos", n_images)
        encoders = {}
        for name in [m for m in args.models.split(",") if m]:
            encoders[name] = create_encoder("hf_vision", model=save_vit(tmp, VITS[name]), pooling="cls")
            r = bench_side(encoders[name], paths, device, batch, db, name, tmp / "pixel_cache")
            result[name] = r
            say(f"{name}: forward {r['forward_per_s']:.1f} img/s, decode ceiling {r['decode_per_s']:.1f} img/s, "
                f"JPEG→stored vector {r['end_to_end_per_s']:.1f} img/s; ratio {r['ratio']:.3f}, "
                f"÷ min(forward, decode) {r['ratio_vs_bound']:.3f}")
        if {"vit-b16", "vit-b32"} <= encoders.keys():
            shared = PixelCache(tmp / "pixel_cache" / "shared")
            prepared_batches(encoders["vit-b16"], paths, [f"shared-{i}" for i in range(n_images)], device, batch,
                             shared)  # the first encoder's pass writes the pixels
            r = bench_cached(encoders["vit-b32"], paths, device, batch, db, shared)
            result["cached_decode"] = r
            result["cached_decode_ratio"] = r["ratio"]
            say(f"vit-b32 after vit-b16 (pixels cached): forward {r['forward_per_s']:.1f} img/s, end to end "
                f"{r['end_to_end_per_s']:.1f} img/s; ratio {r['ratio']:.3f}")
        encoder, label = text_encoder(tmp)
        r = bench_side(encoder, titles(n_texts), device, text_batch, db, "text", tmp / "pixel_cache")
        result["text"] = {**r, "model": label}
        say(f"{label}: forward {r['forward_per_s']:.1f} texts/s, tokenise {r['decode_per_s']:.1f} texts/s, "
            f"tokenise+encode+store {r['end_to_end_per_s']:.1f} texts/s; ratio {r['ratio']:.3f}")
        writes = {}
        for key in [k for k in ("vit-b16", "vit-b32", "text") if k in result]:
            rate = insert_rate(db, result[key]["dim"])
            writes[key] = rate / result[key]["end_to_end_per_s"]
            say(f"cache inserts at {result[key]['dim']}-d: {rate:,.0f} rows/s = {writes[key]:.1f}× {key} end to end")
        result["cache_write_ratio"] = min(writes.values())
        result["cache_write_ratios"] = writes
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
