"""What the app may touch on a shared machine: data roots for typed server paths, the upload size limit, no
code execution from the browser, and whether the server is exposed beyond this machine.

Anyone who can reach the app's port acts as the server's user, so every path typed in the browser must resolve
(symlinks followed) under a data root, uploads are bounded (and stored privately by :mod:`workbench.data.uploads`),
and settings that run code from outside the workbench (``trust_remote_code``, ``plugins``) are never set from the
app and only run from it after an explicit opt-in. The CLI, run by a local user, is not restricted. No Streamlit
here: the app, the runner and the CLI can all call these checks.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.config import RunConfig

DATA_ROOTS_ENV = "WORKBENCH_DATA_ROOTS"
ALLOW_REMOTE_CODE_ENV = "WORKBENCH_ALLOW_REMOTE_CODE"
MAX_UPLOAD_ENV = "WORKBENCH_MAX_UPLOAD_MB"
AUTH_PROXY_ENV = "WORKBENCH_AUTH_PROXY"
DEFAULT_MAX_UPLOAD_MB = 200  # the shipped .streamlit/config.toml sets server.maxUploadSize to the same value
CODE_OPTIONS = ("trust_remote_code",)  # encoder options that make transformers run a model repository's Python
_TRUE = {"1", "true", "yes", "on"}


class PathNotAllowedError(ValueError):
    """A server path typed in the app that resolves outside the data roots."""


class RemoteCodeError(ValueError):
    """A setting that would run code from outside the workbench, requested through the app."""


# ---------------------------------------------------------------------------------------------- data roots
def data_roots(db: str | os.PathLike[str]) -> tuple[Path, ...]:
    """The folders the app may read: ``$WORKBENCH_DATA_ROOTS`` (os.pathsep-separated), else the database's
    folder and the current working directory; resolved, duplicates dropped."""
    configured = os.environ.get(DATA_ROOTS_ENV, "")
    entries = [e.strip() for e in configured.split(os.pathsep) if e.strip()]
    candidates = [Path(e).expanduser() for e in entries] if entries else [Path(db).parent, Path.cwd()]
    return tuple(dict.fromkeys(p.resolve() for p in candidates))


def roots_hint(roots: tuple[Path, ...]) -> str:
    """How to add a folder, naming the current roots (shown with every refusal)."""
    listed = os.pathsep.join(str(r) for r in roots)
    return (f"The app reads only under its data roots: {', '.join(str(r) for r in roots)}. Move the data under "
            f"one of them, or restart the app with {DATA_ROOTS_ENV}={listed}{os.pathsep}/your/folder "
            f"(folders separated by '{os.pathsep}').")


def check_server_path(value: str | os.PathLike[str], db: str | os.PathLike[str], *, what: str = "path") -> Path:
    """The resolved path (symlinks followed) when it lies under a data root; else :class:`PathNotAllowedError`.

    Checked before anything is read, so a refusal says nothing about whether the file exists.
    """
    text = os.fspath(value).strip()
    if not text:
        raise ValueError(f"The {what} is empty; type a path on the server.")
    if "\x00" in text:
        raise PathNotAllowedError(f"The {what} contains a NUL character.")
    resolved = Path(text).expanduser().resolve()
    roots = data_roots(db)
    if not any(resolved.is_relative_to(root) for root in roots):
        raise PathNotAllowedError(f"The {what} {text!r} is outside the data roots. {roots_hint(roots)}")
    return resolved


def is_path_like(value: str) -> bool:
    """Whether a model option names a local folder rather than a Hub id: absolute, ``~``/``.``-prefixed, with a
    ``..`` part, or an existing path relative to the working directory (transformers would load that)."""
    text = value.strip()
    path = Path(text)
    if path.is_absolute() or text.startswith(("~", ".")) or ".." in path.parts:
        return True
    try:
        return path.exists()
    except OSError:  # e.g. a name too long to be a file: not a local folder
        return False


def check_model_option(value: Any, db: str | os.PathLike[str]) -> None:
    """Refuse a local model folder outside the data roots; a Hub id (``org/name``) passes untouched."""
    if isinstance(value, str) and value.strip() and is_path_like(value):
        check_server_path(value, db, what="model folder")


# ------------------------------------------------------------------------------------------- remote code
def code_execution_settings(config: RunConfig | Mapping[str, Any]) -> list[str]:
    """The settings of a config (or raw mapping) that run code from outside the workbench, readable, e.g.
    ``image_encoder.trust_remote_code = true`` and ``plugins = ['my_encoders.py']``."""
    raw = config.to_dict() if isinstance(config, RunConfig) else dict(config)
    found = [f"{section}.{key} = true" for section in ("image_encoder", "text_encoder")
             for key in CODE_OPTIONS if isinstance(raw.get(section), Mapping) and raw[section].get(key)]
    plugins = list(raw.get("plugins") or ())
    if plugins:
        found.append(f"plugins = {plugins}")
    return found


def refuse_code_options(options: Mapping[str, Any], what: str) -> None:
    """The app's builder never sets ``trust_remote_code``: it runs the model repository's Python on the server."""
    for key in CODE_OPTIONS:
        if options.get(key):
            raise RemoteCodeError(
                f"{what} option {key!r} cannot be set from the app: it lets transformers download and run the "
                "model repository's own Python on this server. Remove it (most models do not need it); to use "
                "such a model, write the setting in a config file on disk and run that file with the CLI "
                "(python -m workbench run --config FILE).")


def remote_code_allowed() -> bool:
    """The server's explicit opt-in (``WORKBENCH_ALLOW_REMOTE_CODE=1``) to run configs that execute outside code."""
    return os.environ.get(ALLOW_REMOTE_CODE_ENV, "").strip().lower() in _TRUE


def check_app_run_config(config: RunConfig) -> None:
    """Refuse, in a run started from the app, a config that runs outside code unless the server opted in."""
    settings = code_execution_settings(config)
    if settings and not remote_code_allowed():
        raise RemoteCodeError(
            f"Configuration {config.name!r} sets {'; '.join(settings)}, which runs code from outside the workbench "
            "on this server. The app does not start it: run it with the CLI (python -m workbench run --config "
            f"FILE), or restart the app with {ALLOW_REMOTE_CODE_ENV}=1 if everyone who can reach it is trusted.")


# ------------------------------------------------------------------------------------------- upload size
def positive_env_number(name: str, default: float) -> float:
    """A positive number from the environment (``default`` when unset), with a clear error otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; set a positive number or unset it "
                         f"(default {default:g}).") from None
    if not value > 0:
        raise ValueError(f"{name}={raw!r} must be positive (default {default:g}).")
    return value


def upload_limit_mb(server_max_mb: float | None = None) -> int:
    """The upload size limit in MB: ``$WORKBENCH_MAX_UPLOAD_MB`` (default 200), never above Streamlit's
    ``server.maxUploadSize`` (which rejects larger bodies before the app sees them)."""
    limit = positive_env_number(MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB)
    if server_max_mb is not None and server_max_mb > 0:
        limit = min(limit, server_max_mb)
    return max(1, int(limit))


# --------------------------------------------------------------------------------------------- exposure
def is_loopback(address: str | None) -> bool:
    """Whether a ``server.address`` serves this machine only; unset or empty means every interface."""
    text = (address or "").strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:  # empty, or a host name that may resolve to a public interface
        return False


def auth_proxy_declared() -> bool:
    """The operator states that a reverse proxy authenticates every request (``WORKBENCH_AUTH_PROXY=1``)."""
    return os.environ.get(AUTH_PROXY_ENV, "").strip().lower() in _TRUE


def exposure_warning(address: str | None, *, login_configured: bool) -> str | None:
    """The warning every page shows when the server is reachable from other machines without authentication."""
    if is_loopback(address) or login_configured or auth_proxy_declared():
        return None
    where = f"address {address}" if (address or "").strip() else "every network interface"
    return (f"This server listens on {where} with no authentication: anyone who can reach its port can read "
            "the data under its data roots and start runs on this machine. Bind it to 127.0.0.1 and share it "
            "through an SSH tunnel, put it behind a reverse proxy that authenticates (then set "
            f"{AUTH_PROXY_ENV}=1), or configure Streamlit's OIDC login ([auth] in .streamlit/secrets.toml). "
            "See 'Security' in the README.")
