"""Encoding throughput: the runner's pipeline vs the bare model, measured side by side in one run.

    python -m benchmarks.bench_encode [--device auto] [--images 96] [--texts 512] [--models vit-b16,vit-b32]

Image ratio = JPEG-file-to-stored-vector throughput (``encode_with_cache``: decode with ``Image.draft`` in worker
threads, preprocess, forward, write to the DuckDB cache) ÷ forward-only throughput on the same pre-decoded,
pre-processed batches. Text ratio = (tokenise + encode + store) ÷ pre-tokenised forward. Cache speed-up = time
of a first run ÷ a second run of a config that changes only the fusion head. Random weights (timing only).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from workbench.device import autocast_context, resolve_device
from workbench.encoding import encode_with_cache, load_items
from workbench.models import create_encoder

VITS = {"vit-b16": 16, "vit-b32": 32}


def make_jpegs(folder: Path, n: int, size=(1152, 864)) -> list[str]:
    """``n`` distinct ~1-megapixel JPEG photos (smooth random colour fields, quality 90)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        path = folder / f"img{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


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
        from workbench.models.hf import minilm_path

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


def timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def bench_pipeline(encoder, sources: list[str], device: torch.device, batch: int, db: Path, tag: str) -> dict:
    modality = encoder.modality
    items = load_items(modality, sources, 256)
    batches = [encoder.preprocess(items[i : i + batch]) for i in range(0, len(items), batch)]

    def forward_only() -> None:
        with torch.inference_mode(), autocast_context(device):
            for b in batches:
                encoder.forward(b, device).float().cpu()

    forward_only()  # warm-up: weights on the device, kernels compiled
    raw = timed(forward_only, repeats=2)
    calls = [0]

    def pipeline() -> None:  # fresh content hashes each call, so every item is really encoded and stored
        calls[0] += 1
        encode_with_cache(encoder, sources, [f"{tag}-{calls[0]}-{i}" for i in range(len(sources))], db=db,
                          cache_key=f"bench-{tag}", device=device, batch_size=batch)

    e2e = timed(pipeline, repeats=2)
    n = len(sources)
    return {"raw_items_per_s": n / raw, "pipeline_items_per_s": n / e2e, "ratio": raw / e2e}


def bench_cache(db: Path, products: int) -> dict:
    """A first run, then a run whose config differs only in the fusion head (encoders served from the cache)."""
    from workbench import runner
    from workbench.config import config_from_dict
    from workbench.data.evalsets import create_catalog_eval_set

    create_catalog_eval_set("bench", db=db, n_products=products, seed=0)
    base = {"name": "a", "image_encoder": {"type": "small_cnn", "width": 16, "image_size": 48, "epochs": 4},
            "text_encoder": {"type": "minilm"}, "fusion": {"type": "contrastive", "dim": 128}}
    out = {}
    for label, config in (("first", base), ("rerun", {**base, "name": "b", "fusion": {"type": "cca"}})):
        start = time.perf_counter()
        run_id = runner.run(config_from_dict(config), "bench", db=db, device="cpu")
        out[f"{label}_run_s"] = time.perf_counter() - start
        timings = runner.get_run(run_id, db=db)["timings"]
        out[f"{label}_encoders_s"] = sum(timings[side]["fit_s"] + timings[side]["encode_s"]
                                         for side in ("image_encoder", "text_encoder"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", default="vit-b16,vit-b32")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument("--cache-products", type=int, default=1000)
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        db = tmp_path / "bench.duckdb"
        paths = make_jpegs(tmp_path, args.images)
        for name in [m for m in args.models.split(",") if m]:
            encoder = create_encoder("hf_vision", model=save_vit(tmp_path, VITS[name]), pooling="cls")
            result = bench_pipeline(encoder, paths, device, args.batch, db, name)
            print(f"{name}: forward {result['raw_items_per_s']:.1f} img/s, JPEG→stored vector "
                  f"{result['pipeline_items_per_s']:.1f} img/s, ratio {result['ratio']:.3f}")
        texts = [f"Brand{i % 17} {['red', 'blue', '绿色'][i % 3]} cotton t-shirt size {i % 5} 纯棉 T恤"
                 for i in range(args.texts)]
        encoder, label = text_encoder(tmp_path)
        result = bench_pipeline(encoder, texts, device, 128, db, "text")
        print(f"{label}: pre-tokenised forward {result['raw_items_per_s']:.1f} texts/s, tokenise+encode+store "
              f"{result['pipeline_items_per_s']:.1f} texts/s, ratio {result['ratio']:.3f}")
        if not args.skip_cache:
            r = bench_cache(db, args.cache_products)
            print(f"cache ({args.cache_products} products): first run {r['first_run_s']:.1f} s "
                  f"(fit + encode {r['first_encoders_s']:.1f} s); fusion-only re-run {r['rerun_run_s']:.1f} s "
                  f"(fit + encode {r['rerun_encoders_s']:.2f} s): whole run "
                  f"{r['first_run_s'] / r['rerun_run_s']:.1f}x, encoder stage "
                  f"{r['first_encoders_s'] / max(r['rerun_encoders_s'], 1e-3):.0f}x faster")


if __name__ == "__main__":
    main()
