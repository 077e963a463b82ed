"""Shared page set-up: page config, session-state defaults, the database path and friendly errors."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from workbench import store

T = TypeVar("T")
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
