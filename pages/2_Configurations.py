"""Configurations: build one from the plug-in registries, preview and save it as TOML, pick a grid to run."""

from __future__ import annotations

import streamlit as st

from workbench.ui import configs
from workbench.ui.common import friendly_errors, init_page

db = init_page("Configurations", icon=":material/tune:")
st.title("Configurations")
st.caption("A configuration is an image encoder, a text encoder, a fusion head, a threshold policy and a seed. "
           f"Saved configurations go to `{configs.saved_folder(db)}`, where the command line finds them too "
           "(`python -m workbench run --config NAME`).")

catalog = configs.load_catalog(db)
for problem in catalog.problems:
    st.warning(f"Skipped a saved configuration: {problem}")

st.subheader("Start from a ready-made or saved configuration")
left, right = st.columns([3, 1], vertical_alignment="bottom")
left.selectbox("Configuration", list(catalog.configs), key="configs_source")
right.button("Load into the builder", on_click=configs.load_selected, args=(catalog.configs,))

st.subheader("Build")
config = configs.builder(db)
if config is not None:
    configs.preview(config)
    overwrite = st.checkbox("Overwrite a saved configuration of the same name", key="configs_overwrite")
    if st.button("Save configuration", type="primary"):
        with friendly_errors("Saving the configuration"):
            configs.save(config, db, overwrite=overwrite)

st.subheader("Grid for the Runs page")
selected = configs.grid(configs.load_catalog(db).configs)
if selected:
    st.caption(f"{len(selected)} configuration(s) selected: the **Runs** page starts with them.")
