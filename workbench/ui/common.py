"""Shared page set-up: page config, login and exposure checks, session-state defaults, the database path and
friendly errors."""

from __future__ import annotations

import io
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit import config as st_config

from workbench import security, store
from workbench.data.images import load_image

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])")

SESSION_DEFAULTS: dict[str, Any] = {
    "selected_eval_set": None,  # name of the eval set last chosen on any page
    "selected_runs": [],  # run ids chosen for comparison
}


def init_page(title: str, icon: str = "🧪") -> Path:
    """Configure the page, initialise session state once, and return the database path in use."""
    st.set_page_config(page_title=f"{title} · Matching workbench", page_icon=icon, layout="wide")
    login = login_configured()
    if login and not st.user.get("is_logged_in", False):
        st.info("This workbench needs you to log in.")
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()
    warning = security.exposure_warning(st_config.get_option("server.address"), login_configured=login)
    if warning:
        st.warning(warning, icon="⚠️")
    for key, value in SESSION_DEFAULTS.items():
        st.session_state.setdefault(key, value if not isinstance(value, list) else list(value))
    path = db_path()
    with friendly_errors("Removing old uploads"):
        _clean_uploads_once(str(path))
    return path


def login_configured() -> bool:
    """Whether Streamlit's OIDC login is set up (an ``[auth]`` section in secrets.toml): then every page asks
    for it."""
    try:
        return bool(st.secrets.get("auth"))
    except FileNotFoundError:  # no secrets file at all
        return False


@st.cache_resource(show_spinner=False)
def _clean_uploads_once(db: str) -> int:
    """Delete stale uploads once per server process and database (later ones go before each new upload)."""
    return security.clean_uploads(db)


def db_path() -> Path:
    """The database file: ``$WORKBENCH_DB`` or ``data/workbench.duckdb`` (the CLI's default too)."""
    return store.resolve_db_path()


@contextmanager
def friendly_errors(action: str):
    """Show expected failures as a readable message instead of a traceback."""
    try:
        yield
    except store.StoreLockedError as exc:
        st.warning(f"{action}: the database is busy. {exc}")
    except (ValueError, KeyError, FileNotFoundError, RuntimeError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        st.error(f"{action} failed: {message}")


def escape_markdown(text: Any) -> str:
    """Backslash-escape every markdown/emoji/LaTeX trigger so untrusted text renders literally."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def file_mtime(path: str | Path | None) -> float:
    """Modification time (0 when missing): part of cache keys, so an edited file is read again."""
    try:
        return Path(path).stat().st_mtime if path else 0.0
    except OSError:
        return 0.0


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail(path: str | None, mtime: float = 0.0, max_side: int = 160) -> bytes | None:
    """A small JPEG of an image, or None when it cannot be read (callers say so)."""
    if not path:
        return None
    try:
        image = load_image(path, max_side=max_side)
    except (OSError, ValueError):
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
