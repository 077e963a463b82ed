"""Device choice, mixed precision and batch-size back-off on out-of-memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, TypeVar

import torch

T = TypeVar("T")
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA, else MPS, else CPU. Asking for an absent accelerator is an error, not a silent fallback."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"Unknown device {name!r}. Available: {list(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; use --device auto or cpu.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but MPS is not available; use --device auto or cpu.")
    return torch.device(name)


def autocast_context(device: torch.device):
    """bf16 autocast on GPUs that support it, fp16 on older CUDA GPUs, nothing on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return nullcontext()


def describe_device(device: torch.device) -> dict:
    info: dict[str, Any] = {"type": device.type, "name": "CPU"}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gb=round(props.total_memory / 2**30, 1))
    elif device.type == "mps":
        info["name"] = "Apple MPS"
    return info


def gpu_memory(device: torch.device) -> dict | None:
    if device.type != "cuda":
        return None
    return {
        "allocated_gb": round(torch.cuda.memory_allocated(device) / 2**30, 2),
        "reserved_gb": round(torch.cuda.memory_reserved(device) / 2**30, 2),
        "peak_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
    }


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def run_with_backoff(
    fn: Callable[[Sequence[T]], Any],
    items: Sequence[T],
    batch_size: int,
    *,
    on_backoff: Callable[[int], None] | None = None,
) -> tuple[list[Any], int]:
    """Apply ``fn`` to ``items`` in chunks of ``batch_size``, halving it on out-of-memory.

    Returns the per-chunk results and the batch size that finally worked. Fails only when one item does not fit.
    """
    results: list[Any] = []
    start = 0
    while start < len(items):
        chunk = items[start : start + batch_size]
        try:
            results.append(fn(chunk))
        except Exception as exc:
            if not is_oom(exc) or batch_size == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            if on_backoff:
                on_backoff(batch_size)
            continue
        start += len(chunk)
    return results, batch_size
