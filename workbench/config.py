"""Run configurations: image encoder + text encoder + fusion head + threshold options + seed.

Configs are TOML or JSON files (the ready-made ones live in ``configs/``) or plain dicts built in Python or the app.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.metrics.calibration import CALIBRATION_METHODS

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
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

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        """Stable hash of everything that changes results (not the name or description)."""
        payload = {k: v for k, v in self.to_dict().items() if k not in ("name", "description", "offline")}
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
    )


def load_config(path_or_name: str | Path) -> RunConfig:
    """Load a config from a .toml/.json file, or by name from the ready-made ``configs/`` folder."""
    path = Path(path_or_name)
    if not path.exists():
        matches = [p for p in CONFIG_DIR.glob("*.*") if p.stem == str(path_or_name)]
        if not matches:
            raise ConfigError(
                f"Config {str(path_or_name)!r} not found (neither a file nor a ready-made config). "
                f"Available: {[c.name for c in list_configs()]}"
            )
        path = matches[0]
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Could not parse config {path}: {exc}") from exc
    return config_from_dict(raw, default_name=path.stem)


def list_configs(directory: Path = CONFIG_DIR) -> list[RunConfig]:
    """The ready-made configs, sorted by name."""
    return sorted(
        (load_config(p) for p in directory.glob("*.toml")), key=lambda c: (not c.offline, c.name)
    )


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
