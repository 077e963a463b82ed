"""One prepared check of the CUDA path: placement, mixed precision, out-of-memory back-off, runs, throughput.

    python -m benchmarks.gpu_check [--products 200] [--images 512]

Prints one line per check (PASS/FAIL + figures). Meant for a machine with a GPU; exits 2 when there is none.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import traceback
from pathlib import Path

import torch

from benchmarks.bench_encode import bench_pipeline, make_jpegs, save_vit, text_encoder
from workbench.device import autocast_context, describe_device, resolve_device
from workbench.encoding import encode_with_cache
from workbench.models import create_encoder


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
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--only", default="placement,oom,runs,throughput", help="comma-separated checks to run")
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
        images = [make_jpegs(tmp, 1, size=(320, 240))[0]]
        from workbench.encoding import load_items

        batch = encoder.preprocess(load_items("image", images, 256))
        with torch.inference_mode(), autocast_context(device):
            model = encoder._module_on(device)
            linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
            hook = linear.register_forward_hook(lambda m, i, o: seen.update(dtype=o.dtype, device=o.device))
            out = encoder.forward(batch, device)
            hook.remove()
        assert seen["device"].type == "cuda" and seen["dtype"] in (torch.bfloat16, torch.float16), seen
        assert next(model.parameters()).device.type == "cuda"
        return f"weights on {next(model.parameters()).device}, matmuls in {seen['dtype']}, output {out.dtype}"

    def oom_backoff() -> str:
        encoder = create_encoder("hf_vision", model=vit16, pooling="cls")
        paths = make_jpegs(tmp, 600, size=(256, 256))
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, 2.5 * 2**30 / total), torch.cuda.current_device())
        try:
            vectors, _, stats = encode_with_cache(encoder, paths, [f"oom{i}" for i in range(len(paths))], db=db,
                                                  cache_key="oom", device=device, batch_size=512)
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, torch.cuda.current_device())
        assert stats.batch_size < 512 and vectors.shape == (600, 768)
        return f"batch 512 ran out of memory under a 2.5 GiB cap and backed off to {stats.batch_size}; all 600 encoded"

    def runs_on_cuda() -> str:
        from workbench import runner
        from workbench.config import config_from_dict
        from workbench.data.evalsets import create_catalog_eval_set
        from workbench.evaluation import load_metrics

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
        paths = make_jpegs(tmp, args.images)
        lines = []
        for name, patch in (("vit-b16", 16), ("vit-b32", 32)):
            encoder = create_encoder("hf_vision", model=vit16 if patch == 16 else save_vit(tmp, 32), pooling="cls")
            r = bench_pipeline(encoder, paths, device, 128, db, f"tp-{name}")
            lines.append(f"{name} forward {r['raw_items_per_s']:.0f} img/s, JPEG→vector "
                         f"{r['pipeline_items_per_s']:.0f} img/s, ratio {r['ratio']:.2f}")
        encoder, label = text_encoder(tmp)
        texts = [f"Brand{i % 17} red cotton t-shirt size {i % 5} 纯棉 T恤 {i}" for i in range(4096)]
        r = bench_pipeline(encoder, texts, device, 256, db, "tp-text")
        lines.append(f"{label} forward {r['raw_items_per_s']:.0f} texts/s, tokenise+encode "
                     f"{r['pipeline_items_per_s']:.0f} texts/s, ratio {r['ratio']:.2f}")
        return "; ".join(lines)

    checks = {"placement": ("placement + mixed precision", placement_and_precision),
              "oom": ("OOM back-off", oom_backoff), "runs": ("runs on cuda vs cpu", runs_on_cuda),
              "throughput": ("throughput", throughput)}
    for key in args.only.split(","):
        check(*checks[key])


if __name__ == "__main__":
    main()
