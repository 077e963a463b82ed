"""Configurations: build one from the plug-in registries, preview and save it as TOML, pick a grid to run."""

from __future__ import annotations

import streamlit as st

from workbench.config import dump_config_toml
from workbench.ui import configs
from workbench.ui.common import friendly_errors, init_page

db = init_page("Configurations", icon="🧩")
configs.init_state()
st.title("Configurations")
st.caption("A configuration is an image encoder, a text encoder, a fusion head, a threshold policy and a seed. "
           f"Saved configurations go to `{configs.user_config_dir(db)}`.")

catalog, problems = configs.config_catalog(str(db))
for problem in problems:
    st.warning(f"Skipped a saved configuration: {problem}")

st.subheader("Start from a ready-made or saved configuration")
left, right = st.columns([3, 1], vertical_alignment="bottom")
left.selectbox("Configuration", list(catalog), key="configs_source")
right.button("Load into the builder", on_click=configs.load_selected, args=(catalog,))

st.subheader("Build")
config = configs.builder()
if config is not None:
    st.caption("Preview (TOML)")
    st.code(dump_config_toml(config), language="toml")
    overwrite = st.checkbox("Overwrite a saved configuration of the same name", key="configs_overwrite")
    if st.button("Save configuration", type="primary"):
        with friendly_errors("Saving the configuration"):
            path = configs.save_config(config, db, overwrite=overwrite)
            configs.config_catalog.clear()
            label = configs.SAVED_PREFIX + path.stem
            st.session_state[configs.SELECTION_KEY] = [*st.session_state[configs.SELECTION_KEY], label]
            st.success(f"Saved {path.name} and added '{label}' to the grid below.")

st.subheader("Grid for the Runs page")
catalog, _ = configs.config_catalog(str(db))
selected = configs.grid(catalog)
if selected:
    st.caption(f"{len(selected)} configuration(s) selected: the **Runs** page starts with them.")
