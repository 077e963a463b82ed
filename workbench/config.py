"""Run configurations: image encoder + text encoder + fusion head + threshold options + seed.

Configs are TOML or JSON files or plain dicts built in Python or the app. They live in two folders that the app and
the CLI both read: the ready-made ones in ``configs/`` (listed by name) and the saved ones in
``<database folder>/configs`` (what the app's Save button writes; listed as ``saved: NAME``, loadable by ``NAME``
when no ready-made config has that name).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench import store
from workbench.metrics.calibration import CALIBRATION_METHODS

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SAVED_DIR_NAME = "configs"  # under the database's folder
SAVED_PREFIX = "saved: "
THRESHOLD_POLICIES = ("max_f1", "youden", "target_precision", "target_fpr", "cost")


class ConfigError(ValueError):
    """A configuration that cannot be used, with the reason and the valid choices."""


@dataclass(frozen=True)
class RunConfig:
    name: str
    image_encoder: dict
    text_encoder: dict
    fusion: dict
    description: str = ""
    offline: bool = True
    seed: int = 0
    threshold: dict = field(default_factory=lambda: {"policy": "max_f1"})
    batch_size: int = 64
    plugins: tuple[str, ...] = ()  # plug-in modules (file paths or dotted names) loaded before the encoders
    compile: bool = False  # torch.compile the encoders on GPU (slow start, faster forward); not in the fingerprint

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        """Stable hash of everything that changes results (not the name or description)."""
        payload = {k: v for k, v in self.to_dict().items() if k not in ("name", "description", "offline", "compile")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def with_seed(self, seed: int | None) -> RunConfig:
        return self if seed is None else RunConfig(**{**self.to_dict(), "seed": int(seed)})


def config_from_dict(raw: dict, *, default_name: str = "custom") -> RunConfig:
    """Validate a raw mapping (from TOML/JSON/the app) into a RunConfig."""
    allowed = set(RunConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"Unknown config key(s) {unknown}. Valid keys: {sorted(allowed)}")
    for part in ("image_encoder", "text_encoder", "fusion"):
        section = raw.get(part)
        if not isinstance(section, dict) or not section.get("type"):
            raise ConfigError(f"Config section [{part}] needs a 'type' (e.g. type = \"tfidf\").")
    threshold = dict(raw.get("threshold") or {"policy": "max_f1"})
    if threshold.get("policy", "max_f1") not in THRESHOLD_POLICIES:
        raise ConfigError(f"Unknown threshold policy {threshold.get('policy')!r}. Available: {THRESHOLD_POLICIES}")
    if threshold.get("calibration", "platt") not in CALIBRATION_METHODS:
        raise ConfigError(f"Unknown calibration {threshold.get('calibration')!r} in [threshold]. "
                          f"Available: {CALIBRATION_METHODS}")
    return RunConfig(
        name=str(raw.get("name") or default_name),
        image_encoder=dict(raw["image_encoder"]),
        text_encoder=dict(raw["text_encoder"]),
        fusion=dict(raw["fusion"]),
        description=str(raw.get("description", "")),
        offline=bool(raw.get("offline", True)),
        seed=int(raw.get("seed", 0)),
        threshold=threshold,
        batch_size=int(raw.get("batch_size", 64)),
        plugins=tuple(str(p) for p in raw.get("plugins", ())),
        compile=bool(raw.get("compile", False)),
    )


def user_config_dir(db: str | os.PathLike[str] | None = None) -> Path:
    """Where saved configs live: ``<database folder>/configs`` (``db`` resolved like every command's ``--db``)."""
    return store.resolve_db_path(db).parent / SAVED_DIR_NAME


@dataclass(frozen=True)
class ConfigCatalog:
    """Every config the app and the CLI offer, by the label that loads it, and why any saved file was skipped."""

    configs: dict[str, RunConfig]  # ready-made by name first, then saved ones as 'saved: STEM'
    problems: list[str]  # one line per saved file that cannot be read


def _read(path: Path) -> RunConfig:
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Could not parse config {path}: {exc}") from exc
    return config_from_dict(raw, default_name=path.stem)


def _ready_made_files(suffixes: tuple[str, ...] = (".toml",)) -> list[Path]:
    return sorted(p for p in CONFIG_DIR.iterdir() if p.suffix in suffixes)


def _saved_files(db: str | os.PathLike[str] | None) -> list[Path]:
    folder = user_config_dir(db)
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


def config_catalog(db: str | os.PathLike[str] | None = None, *, saved: bool = True) -> ConfigCatalog:
    """The ready-made configs (offline first, then by name) and, with ``saved``, the ones saved next to ``db``.

    A ready-made config that cannot be read is a bug and raises; a saved file that cannot be read is skipped and
    named in ``problems`` so one bad file never hides the others.
    """
    configs = {c.name: c for c in sorted((_read(p) for p in _ready_made_files()),
                                         key=lambda c: (not c.offline, c.name))}
    problems: list[str] = []
    for path in _saved_files(db) if saved else []:
        try:
            configs[SAVED_PREFIX + path.stem] = _read(path)
        except (ValueError, OSError) as exc:
            problems.append(f"{path.name}: {exc}")
    return ConfigCatalog(configs, problems)


def list_configs(db: str | os.PathLike[str] | None = None, *, saved: bool = True) -> list[RunConfig]:
    """The ready-made configs and (with ``saved``) the readable saved ones, in catalogue order."""
    return list(config_catalog(db, saved=saved).configs.values())


def load_config(path_or_name: str | os.PathLike[str], *, db: str | os.PathLike[str] | None = None) -> RunConfig:
    """Load a config from a .toml/.json file, or by name: a ready-made config, else one saved next to ``db``.

    ``saved: NAME`` (the app's label) always means the saved one, even when a ready-made config has that name.
    """
    path = Path(path_or_name)
    if path.exists():
        return _read(path)
    text = str(path_or_name).strip()
    saved_only = text.startswith(SAVED_PREFIX.strip())
    stem = text.removeprefix(SAVED_PREFIX.strip()).strip() if saved_only else text
    candidates = ([] if saved_only else _ready_made_files((".toml", ".json"))) + _saved_files(db)
    for candidate in candidates:
        if candidate.stem == stem:
            return _read(candidate)
    raise ConfigError(
        f"Config {text!r} not found: neither a file, a ready-made config in {CONFIG_DIR} nor a saved one in "
        f"{user_config_dir(db)}. Available: {list(config_catalog(db).configs)}")


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "config"


def save_config(config: RunConfig, db: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> Path:
    """Write ``config`` as TOML into the saved-configs folder next to ``db``; refuses to overwrite unless asked,
    and refuses TOML that would not load back."""
    folder = user_config_dir(db)
    path = folder / f"{_file_stem(config.name)}.toml"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path.name} already exists in {folder}; tick 'Overwrite' to replace it.")
    text = dump_config_toml(config)
    try:
        config_from_dict(tomllib.loads(text), default_name=path.stem)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The configuration cannot be written as TOML ({exc}); simplify its options.") from exc
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def dump_config_toml(config: RunConfig) -> str:
    """Serialise a config as TOML (flat tables; values are str/int/float/bool/lists)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(str(v), ensure_ascii=False)

    data = config.to_dict()
    data["plugins"] = list(data["plugins"])
    keys = ("name", "description", "offline", "seed", "batch_size") + (("plugins",) if data["plugins"] else ())
    lines = [f"{k} = {value(data[k])}" for k in keys]
    for section in ("image_encoder", "text_encoder", "fusion", "threshold"):  # TOML has no null: None is left out
        lines += ["", f"[{section}]"] + [f"{k} = {value(v)}" for k, v in data[section].items() if v is not None]
    return "\n".join(lines) + "\n"
