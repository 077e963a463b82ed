"""One prepared check of the CUDA path: placement, bf16 weights, GPU JPEG decoding against the CPU path, out-of-memory
back-off and batch probing, runs, throughput at realistic size.

    python -m benchmarks.gpu_check [--products 200] [--images 20000] [--texts 100000] [--only decode,throughput]

Prints one line per check (PASS/FAIL + figures). Meant for a machine with a GPU; exits 2 when there is none. The
throughput check is ``benchmarks.bench_encode``'s measurement (forward-only, decode ceiling, end to end, cached
decode) at 20,000 1-MP JPEGs and 100,000 titles; the decode check asserts per-image cosine >= 0.99 between the
embeddings of the GPU and CPU decode paths with the same random ViT.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_encode import (
    bench_cached,
    bench_side,
    make_jpegs,
    prepared_batches,
    save_vit,
    text_encoder,
    titles,
)
from workbench.models import create_encoder
from workbench.run.decode import gpu_decode_available
from workbench.run.device import ForwardOptions, autocast_context, describe_device, inference_modules, resolve_device
from workbench.run.encoding import encode_with_cache
from workbench.run.pixel_cache import PixelCache


def check(name: str, fn) -> None:
    start = time.perf_counter()
    try:
        detail = fn()
        print(f"PASS {name}: {detail} ({time.perf_counter() - start:.1f} s)", flush=True)
    except Exception:
        print(f"FAIL {name} ({time.perf_counter() - start:.1f} s)\n{traceback.format_exc()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--only", default="placement,decode,oom,runs,throughput", help="comma-separated checks to run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit(2)
    device = resolve_device("auto")
    print("device:", describe_device(device), "torch", torch.__version__, flush=True)
    tmp = Path(tempfile.mkdtemp())
    db = tmp / "gpu.duckdb"
    vit16 = save_vit(tmp, 16)

    def placement_and_precision() -> str:
        encoder = create_encoder("hf_vision", model=vit16, pooling="cls")
        seen: dict[str, object] = {}
        images = make_jpegs(tmp / "placement", 4, size=(320, 240))
        batch = prepared_batches(encoder, images, [f"p{i}" for i in range(4)], device, 4)[0]
        with inference_modules(encoder, device, ForwardOptions()), torch.inference_mode(), autocast_context(device):
            model = encoder._module_on(device)
            linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
            hook = linear.register_forward_hook(lambda m, i, o: seen.update(dtype=o.dtype, device=o.device))
            out = encoder.forward(batch, device)
            hook.remove()
            weights = next(model.parameters())
            attention = getattr(model.config, "_attn_implementation", None)
        assert seen["device"].type == "cuda" and seen["dtype"] == torch.bfloat16, seen
        assert weights.device.type == "cuda" and weights.dtype == torch.bfloat16, weights.dtype
        assert next(encoder._module_on(torch.device("cpu")).parameters()).dtype == torch.float32  # original kept
        return (f"inference copy: weights {weights.dtype} on {weights.device}, matmuls in {seen['dtype']}, attention "
                f"{attention}, output {out.dtype}; the encoder's own weights stay float32")

    def gpu_decode_agrees() -> str:
        assert gpu_decode_available(device), "torchvision is not importable: GPU decoding is off"
        encoder = create_encoder("hf_vision", model=vit16, pooling="mean")
        paths = make_jpegs(tmp / "agree", 256)
        hashes = [f"agree{i}" for i in range(len(paths))]
        gpu, _, stats = encode_with_cache(encoder, paths, hashes, db=db, cache_key="agree-gpu", device=device,
                                          batch_size=64)
        assert stats.decoder == "gpu-pixels" and stats.n_gpu_decoded == len(paths), stats
        cpu, _, cpu_stats = encode_with_cache(encoder, paths, hashes, db=db, cache_key="agree-cpu", device=device,
                                              batch_size=64, gpu_decode=False)
        assert cpu_stats.decoder == "cpu-pixels"
        cosine = (gpu * cpu).sum(1) / np.linalg.norm(gpu, axis=1) / np.linalg.norm(cpu, axis=1)
        assert cosine.min() >= 0.99, cosine.min()
        return (f"{len(paths)} photos: per-image cosine GPU vs CPU decode min {cosine.min():.4f}, "
                f"mean {cosine.mean():.4f}")

    def oom_backoff() -> str:
        encoder = create_encoder("hf_vision", model=vit16, pooling="cls")
        paths = make_jpegs(tmp, 600, size=(256, 256))
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, 2.5 * 2**30 / total), torch.cuda.current_device())
        try:
            vectors, _, stats = encode_with_cache(encoder, paths, [f"oom{i}" for i in range(len(paths))], db=db,
                                                  cache_key="oom", device=device, batch_size=512)
            _, _, probed = encode_with_cache(encoder, paths, [f"oom{i}" for i in range(len(paths))], db=db,
                                             cache_key="probe", device=device, batch_size=16,
                                             forward_options=ForwardOptions())
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, torch.cuda.current_device())
        assert stats.batch_size < 512 and vectors.shape == (600, 768) and probed.batch_size >= 16
        return (f"batch 512 ran out of memory under a 2.5 GiB cap and backed off to {stats.batch_size}; all 600 "
                f"encoded; probing from 16 under the same cap settled on {probed.batch_size}")

    def runs_on_cuda() -> str:
        from workbench.config import config_from_dict
        from workbench.data.evalsets import create_catalog_eval_set
        from workbench.evaluation.aggregate import load_metrics
        from workbench.run import runner

        create_catalog_eval_set("gpu", db=db, n_products=args.products, seed=0)
        out = []
        for fusion in ({"type": "contrastive", "epochs": 20}, {"type": "cross_attention", "epochs": 10}):
            config = config_from_dict({"name": fusion["type"], "image_encoder": {"type": "small_cnn", "epochs": 4},
                                       "text_encoder": {"type": "gru_text", "epochs": 4}, "fusion": fusion})
            aucs = {}
            for dev in ("cuda", "cpu"):
                run_id = runner.run(config, "gpu", db=db, device=dev)
                record = runner.get_run(run_id, db=db)
                assert record["status"] == "done", record["error"]
                metrics = load_metrics(run_id, db=db).set_index("name")["value"]
                aucs[dev] = (metrics["pair/roc_auc"], record["device"], (record["finished_at"] - record["started_at"])
                             .total_seconds())
            out.append(f"{fusion['type']}: cuda AUC {aucs['cuda'][0]:.3f} in {aucs['cuda'][2]:.0f} s "
                       f"(device {aucs['cuda'][1]}), cpu AUC {aucs['cpu'][0]:.3f} in {aucs['cpu'][2]:.0f} s")
        return "; ".join(out)

    def throughput() -> str:
        paths = make_jpegs(tmp / "throughput", args.images)
        lines, encoders = [], {}
        for name, patch in (("vit-b16", 16), ("vit-b32", 32)):
            encoders[name] = create_encoder("hf_vision", model=vit16 if patch == 16 else save_vit(tmp, 32),
                                            pooling="cls")
            r = bench_side(encoders[name], paths, device, 256, db, f"tp-{name}", tmp / "pixel_cache")
            lines.append(f"{name} forward {r['forward_per_s']:.0f} img/s, decode ceiling "
                         f"{r['decode_per_s']:.0f} img/s, JPEG→vector {r['end_to_end_per_s']:.0f} img/s, "
                         f"ratio {r['ratio']:.2f}, "
                         f"÷ min(forward, decode) {r['ratio_vs_bound']:.2f}")
        shared = PixelCache(tmp / "pixel_cache" / "shared")
        prepared_batches(encoders["vit-b16"], paths, [f"shared-{i}" for i in range(len(paths))], device, 256, shared)
        r = bench_cached(encoders["vit-b32"], paths, device, 256, db, shared)
        lines.append(f"vit-b32 with cached pixels: end to end {r['end_to_end_per_s']:.0f} img/s, "
                     f"ratio {r['ratio']:.2f}")
        encoder, label = text_encoder(tmp)
        r = bench_side(encoder, titles(args.texts), device, 1024, db, "tp-text", tmp / "pixel_cache")
        lines.append(f"{label} forward {r['forward_per_s']:.0f} texts/s, tokenise {r['decode_per_s']:.0f} texts/s, "
                     f"tokenise+encode+store {r['end_to_end_per_s']:.0f} texts/s, ratio {r['ratio']:.2f}")
        return "; ".join(lines)

    checks = {"placement": ("placement + bf16 weights", placement_and_precision),
              "decode": ("GPU JPEG decoding agrees with the CPU path", gpu_decode_agrees),
              "oom": ("OOM back-off", oom_backoff), "runs": ("runs on cuda vs cpu", runs_on_cuda),
              "throughput": ("throughput", throughput)}
    for key in args.only.split(","):
        check(*checks[key])


if __name__ == "__main__":
    main()
