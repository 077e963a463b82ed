"""Configurations: build a run config from the plug-in registries, preview/save it as TOML, pick a grid.

Saving and listing belong to :mod:`workbench.config` (one configs location shared with the CLI); the selection for
the Runs page is kept in session state under ``configs_selection`` (labels of the config catalogue), which survives
page switches unlike widget state. Settings that run outside code (``trust_remote_code``, ``plugins``) are never
set here: a loaded file's are shown read-only and left out of what is built, and a typed local model folder must
lie under the data roots.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from workbench import security
from workbench.config import (
    SAVED_PREFIX,
    THRESHOLD_POLICIES,
    ConfigCatalog,
    RunConfig,
    config_from_dict,
    dump_config_toml,
    save_config,
    user_config_dir,
)
from workbench.models import get_encoder_spec, list_encoders
from workbench.models.fusion import get_fusion_spec, list_fusion_heads
from workbench.ui import cache
from workbench.ui.common import escape_markdown, friendly_errors
from workbench.ui.state import BUILDER_DEFAULTS

SELECTION_KEY = "configs_selection"
LOCKED_KEY = "configs_locked"
SIDES = {"image": "configs_image", "text": "configs_text"}


def load_catalog(db: str) -> ConfigCatalog:
    """Ready-made and saved configs (cached until a saved file changes)."""
    return cache.configs(db, cache.configs_version(db))


def saved_folder(db: str) -> str:
    return str(user_config_dir(db))


def catalog_frame(catalog: dict[str, RunConfig]) -> pd.DataFrame:
    return pd.DataFrame([
        {"config": label, "image encoder": c.image_encoder.get("type"), "text encoder": c.text_encoder.get("type"),
         "fusion": c.fusion.get("type"), "offline": c.offline, "threshold": c.threshold.get("policy"),
         "seed": c.seed, "runs outside code": bool(security.code_execution_settings(c)),
         "description": c.description}
        for label, c in catalog.items()
    ])


def parse_options(text: str, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """A JSON object of options; unknown keys are an error naming the valid ones. ``null`` values are dropped
    (TOML has no null: a dropped option takes its default)."""
    text = (text or "").strip() or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} options are not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                         'write an object like {"dim": 128}') from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} options must be a JSON object like {{\"dim\": 128}}, not {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown {what} option(s) {unknown}. Valid options: {list(allowed)}")
    return {k: v for k, v in value.items() if v is not None}


def _options_text(options: dict[str, Any]) -> str:
    return json.dumps(options, ensure_ascii=False, indent=1) if options else "{}"


def load_into_builder(config: RunConfig) -> None:
    """Fill the builder's widgets from a config (used as an on_click callback, before widgets are drawn)."""
    state = st.session_state
    state["configs_name"], state["configs_description"] = config.name, config.description
    settings = security.code_execution_settings(config)
    state[LOCKED_KEY] = (config.name, settings) if settings else None
    for side, section in (("image", config.image_encoder), ("text", config.text_encoder)):
        options = {k: v for k, v in section.items()
                   if k != "type" and not (k in security.CODE_OPTIONS and v)}  # shown read-only instead
        state[f"{SIDES[side]}_encoder"], state[f"{SIDES[side]}_options"] = section["type"], _options_text(options)
    state["configs_fusion"] = config.fusion["type"]
    state["configs_fusion_options"] = _options_text({k: v for k, v in config.fusion.items() if k != "type"})
    threshold = config.threshold
    state["configs_policy"] = threshold.get("policy", "max_f1")
    state["configs_target"] = float(threshold.get("target", BUILDER_DEFAULTS["configs_target"]))
    state["configs_cost_fp"] = float(threshold.get("cost_fp", 1.0))
    state["configs_cost_fn"] = float(threshold.get("cost_fn", 1.0))
    state["configs_per_category"] = bool(threshold.get("per_category", False))
    state["configs_seed"], state["configs_batch_size"] = int(config.seed), int(config.batch_size)


def load_selected(catalog: dict[str, RunConfig]) -> None:
    """on_click of 'Load': the config chosen in ``configs_source`` at the time of the click."""
    config = catalog.get(st.session_state.get("configs_source"))
    if config is not None:
        load_into_builder(config)


def _reset_options(key: str) -> None:
    st.session_state[key] = "{}"


def _describe(description: str, offline: bool, defaults: dict[str, Any]) -> None:
    st.caption(description + ("" if offline else " · **needs the Hugging Face Hub or a local copy**"))
    if defaults:
        st.caption("Options and defaults: " + ", ".join(f"`{k}={json.dumps(v, ensure_ascii=False)}`"
                                                        for k, v in defaults.items()))


def _encoder_widgets(side: str) -> tuple[str, str]:
    prefix = SIDES[side]
    names = list_encoders(side)
    if st.session_state[f"{prefix}_encoder"] not in names:
        st.session_state[f"{prefix}_encoder"] = names[0]
    name = st.selectbox(f"{side.capitalize()} encoder", names, key=f"{prefix}_encoder",
                        on_change=_reset_options, args=(f"{prefix}_options",))
    spec = get_encoder_spec(name)
    _describe(spec.description, spec.offline, spec.defaults)
    text = st.text_area(f"{side.capitalize()} encoder options (JSON)", key=f"{prefix}_options", height=80)
    return name, text


def _show_locked() -> None:
    """A loaded file's code-running settings: read-only, with why they are left out."""
    locked = st.session_state.get(LOCKED_KEY)
    if not locked:
        return
    name, settings = locked
    st.warning(f"'{escape_markdown(name)}' (a file on disk) sets settings that run code from outside the "
               "workbench. The app never sets them, so what you build and save here leaves them out. Run that "
               "file itself from the CLI, or from the Runs page when the server was started with "
               f"{security.ALLOW_REMOTE_CODE_ENV}=1.")
    st.text_area("Set by the file (read-only)", "\n".join(settings), disabled=True, height=68)


def _encoder_section(name: str, text: str, side: str, db: str) -> dict[str, Any]:
    """One encoder's config section; refuses code-running options and model folders outside the data roots."""
    what = f"{side} encoder"
    options = parse_options(text, get_encoder_spec(name).config_keys, what)
    security.refuse_code_options(options, what.capitalize())
    security.check_model_option(options.get("model"), db)
    return {"type": name, **options}


def builder(db: str) -> RunConfig | None:
    """The builder's widgets; returns the config they describe, or None (with the reason shown)."""
    _show_locked()
    left, right = st.columns(2)
    with left:
        name = st.text_input("Name", key="configs_name")
        description = st.text_input("Description", key="configs_description")
        image_name, image_text = _encoder_widgets("image")
        text_name, text_text = _encoder_widgets("text")
    with right:
        heads = list_fusion_heads()
        if st.session_state["configs_fusion"] not in heads:
            st.session_state["configs_fusion"] = heads[0]
        fusion_name = st.selectbox("Fusion head", heads, key="configs_fusion",
                                   on_change=_reset_options, args=("configs_fusion_options",))
        fusion_spec = get_fusion_spec(fusion_name)
        _describe(fusion_spec.description, True, fusion_spec.defaults)
        fusion_text = st.text_area("Fusion head options (JSON)", key="configs_fusion_options", height=80)
        policy = st.selectbox("Threshold policy", THRESHOLD_POLICIES, key="configs_policy",
                              help="How the match threshold is chosen on the val split.")
        threshold: dict[str, Any] = {"policy": policy}
        if policy in ("target_precision", "target_fpr"):
            threshold["target"] = st.number_input("Target", 0.0, 1.0, step=0.01, key="configs_target")
        if policy == "cost":
            c1, c2 = st.columns(2)
            threshold["cost_fp"] = c1.number_input("Cost of a false positive", 0.0, key="configs_cost_fp")
            threshold["cost_fn"] = c2.number_input("Cost of a false negative", 0.0, key="configs_cost_fn")
        if st.checkbox("Per-category thresholds", key="configs_per_category"):
            threshold["per_category"] = True
        c1, c2 = st.columns(2)
        seed = c1.number_input("Seed", 0, 2**31 - 1, step=1, key="configs_seed")
        batch_size = c2.number_input("Batch size", 1, 4096, step=1, key="configs_batch_size")
    with friendly_errors("Building the configuration"):
        image_spec, text_spec = get_encoder_spec(image_name), get_encoder_spec(text_name)
        raw = {
            "name": name.strip(), "description": description,
            "image_encoder": _encoder_section(image_name, image_text, "image", db),
            "text_encoder": _encoder_section(text_name, text_text, "text", db),
            "fusion": {"type": fusion_name, **parse_options(fusion_text, fusion_spec.config_keys, "fusion head")},
            "offline": image_spec.offline and text_spec.offline, "seed": int(seed), "threshold": threshold,
            "batch_size": int(batch_size),
        }
        if not raw["name"]:
            raise ValueError("Give the configuration a name.")
        return config_from_dict(raw)
    return None


def save(config: RunConfig, db: str, *, overwrite: bool) -> None:
    """Save into the shared configs folder and queue the saved config for the Runs page."""
    path = save_config(config, db, overwrite=overwrite)
    label = SAVED_PREFIX + path.stem
    st.session_state[SELECTION_KEY] = [*st.session_state[SELECTION_KEY], label]
    st.success(f"Saved {path.name} and added '{label}' to the grid below.")


def preview(config: RunConfig) -> None:
    st.caption("Preview (TOML)")
    st.code(dump_config_toml(config), language="toml")


def _keep_selection() -> None:
    st.session_state[SELECTION_KEY] = list(st.session_state["configs_grid"])


def grid(catalog: dict[str, RunConfig]) -> list[str]:
    """Pick the configurations the Runs page starts with; the choice survives page switches."""
    st.session_state["configs_grid"] = [c for c in st.session_state[SELECTION_KEY] if c in catalog]
    selected = st.multiselect("Configurations to run", list(catalog), key="configs_grid", on_change=_keep_selection,
                              help="The Runs page starts with these selected.")
    st.session_state[SELECTION_KEY] = list(selected)
    frame = catalog_frame(catalog)
    frame.insert(0, "selected", frame["config"].isin(selected))
    st.dataframe(frame, hide_index=True, width="stretch")
    return selected
