"""What every page shares: page set-up (config, login, exposure warning, session state, the database path),
friendly errors, escaped text, images, and the run pickers.

Untrusted text (titles, categories, config names) is shown with ``st.text``, ``st.image(caption=)`` or escaped
markdown, never as HTML.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from streamlit import config as st_config

from workbench import security, store
from workbench.ui import cache
from workbench.ui.state import init_state

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])")


def init_page(title: str, icon: str = ":material/science:") -> str:
    """Configure the page, ask for login when configured, warn when exposed, initialise session state, and return
    the database path in use (a string: every cached read is keyed by it)."""
    st.set_page_config(page_title=f"{title} · Matching workbench", page_icon=icon, layout="wide")
    login = login_configured()
    if login and not st.user.get("is_logged_in", False):
        st.info("This workbench needs you to log in.")
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()
    warning = security.exposure_warning(st_config.get_option("server.address"), login_configured=login)
    if warning:
        st.warning(warning, icon=":material/warning:")
    init_state()
    path = str(store.resolve_db_path())
    with friendly_errors("Removing old uploads"):
        cache.clean_uploads_once(path)
    return path


def login_configured() -> bool:
    """Whether Streamlit's OIDC login is set up (an ``[auth]`` section in secrets.toml): then every page asks
    for it."""
    try:
        return bool(st.secrets.get("auth"))
    except FileNotFoundError:  # no secrets file at all
        return False


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


def show_image(path: str | None, caption: str | None = None, width: int | str = "stretch") -> None:
    """A cached thumbnail, or a caption naming the file when it cannot be read."""
    image = cache.thumbnail(path, cache.file_mtime(path))
    if image is None:
        st.caption(f"image unavailable: {escape_markdown(Path(path).name) if path else '—'}")
    else:
        st.image(image, caption=caption, width=width)


# ------------------------------------------------------------------------------------------------ run pickers
def pick_run(runs: pd.DataFrame, label: str, key: str) -> str:
    """One run; defaults to the first of ``selected_runs`` if any."""
    ids = list(runs["run_id"])
    labels = dict(zip(runs["run_id"], runs["label"], strict=True))
    if st.session_state.get(key) not in ids:
        preferred = [r for r in st.session_state["selected_runs"] if r in ids]
        st.session_state[key] = preferred[0] if preferred else ids[0]
    return st.selectbox(label, ids, format_func=labels.get, key=key)
