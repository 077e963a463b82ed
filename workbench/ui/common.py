"""Shared page set-up: page config, session-state defaults, the database path and friendly errors."""

from __future__ import annotations

import io
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from workbench import store
from workbench.data.images import load_image

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])")

SESSION_DEFAULTS: dict[str, Any] = {
    "selected_eval_set": None,  # name of the eval set last chosen on any page
    "selected_runs": [],  # run ids chosen for comparison
}


def init_page(title: str, icon: str = "🧪") -> Path:
    """Configure the page, initialise session state once, and return the database path in use."""
    st.set_page_config(page_title=f"{title} · Matching workbench", page_icon=icon, layout="wide")
    for key, value in SESSION_DEFAULTS.items():
        st.session_state.setdefault(key, value if not isinstance(value, list) else list(value))
    return db_path()


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
