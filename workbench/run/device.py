"""Device choice, mixed precision, the inference copies of an encoder's modules, batch-size probing and back-off
on out-of-memory.

On the CPU nothing here changes a number: modules run as loaded, in float32, at the configured batch size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ForwardOptions:
    """How bulk encoding runs the forward pass on a GPU (ignored on the CPU, where numbers stay as they were).

    ``bf16_weights``: weights cast to bfloat16 once (autocast alone re-casts them on every call); ``channels_last``:
    CNN weights in NHWC, the layout the uint8 pixel batches already have; ``compile``: ``torch.compile`` the
    module's parts (off by default: compiling costs a minute or more up front); ``probe_batch``: double the batch
    size while it fits, up to ``max_batch``.
    """

    bf16_weights: bool = True
    channels_last: bool = True
    compile: bool = False
    probe_batch: bool = True
    max_batch: int = 1024


def _module_slots(encoder: Any) -> list[tuple[Any, str, torch.nn.Module]]:
    """Where an encoder keeps its torch modules: module attributes (trained towers) and modules inside dict
    attributes (transformers encoders keep their model in a loaded-components dict)."""
    slots: list[tuple[Any, str, torch.nn.Module]] = []
    for name, value in vars(encoder).items():
        if isinstance(value, torch.nn.Module):
            slots.append((encoder, name, value))
        elif isinstance(value, dict):
            slots.extend((value, key, item) for key, item in value.items() if isinstance(item, torch.nn.Module))
    return slots


def inference_module(module: torch.nn.Module, device: torch.device, options: ForwardOptions) -> torch.nn.Module:
    """A copy of ``module`` on ``device`` set up for fast inference (the original is left untouched)."""
    fast = copy.deepcopy(module).to(device).eval()
    if options.bf16_weights and device.type == "cuda" and torch.cuda.is_bf16_supported():
        fast = fast.to(dtype=torch.bfloat16)
    if options.channels_last and sum(isinstance(m, torch.nn.Conv2d) for m in fast.modules()) > 1:
        fast = fast.to(memory_format=torch.channels_last)  # CNNs only: a ViT's one patch convolution gains nothing
    config = getattr(fast, "config", None)
    if getattr(config, "_attn_implementation", None) == "eager" and hasattr(fast, "set_attn_implementation"):
        try:  # explanations switch the shared model to eager attention; encoding wants SDPA where supported
            fast.set_attn_implementation("sdpa")
        except (ValueError, ImportError):
            pass
    if options.compile:
        for child in fast.children():
            if any(True for _ in child.parameters()):
                child.compile(dynamic=True)
    return fast


@contextmanager
def inference_modules(encoder: Any, device: torch.device, options: ForwardOptions | None) -> Iterator[None]:
    """Within the block the encoder runs on inference copies of its modules (on CUDA only); restored after, so
    fitting, explanations and later runs see the float32 originals."""
    if options is None or device.type != "cuda":
        yield
        return
    slots = _module_slots(encoder)
    for owner, key, module in slots:
        fast = inference_module(module, device, options)
        if isinstance(owner, dict):
            owner[key] = fast
        else:
            setattr(owner, key, fast)
    try:
        yield
    finally:
        for owner, key, module in slots:
            if isinstance(owner, dict):
                owner[key] = module
            else:
                setattr(owner, key, module)


def probe_batch_size(fn: Callable[[int], Any], start: int, *, limit: int, device: torch.device | None = None,
                     memory_fraction: float = 0.75) -> int:
    """The largest batch size from ``start`` doubling up to ``limit`` for which ``fn(size)`` runs without
    out-of-memory, stopping early once a run uses more than ``memory_fraction`` of the GPU's memory. Other errors
    propagate. The back-off in :func:`run_with_backoff` still guards the real batches."""
    if start < 1 or limit < 1:
        raise ValueError(f"start and limit must be >= 1, got start={start}, limit={limit}")
    best = start
    total = torch.cuda.get_device_properties(device).total_memory if device is not None and device.type == "cuda" \
        else None
    while best * 2 <= limit:
        if total is not None:
            torch.cuda.reset_peak_memory_stats(device)
        try:
            fn(best * 2)
        except Exception as exc:
            if not is_oom(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            break
        best *= 2
        if total is not None and torch.cuda.max_memory_allocated(device) > memory_fraction * total:
            break
    return best
