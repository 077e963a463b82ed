"""AppTest of the Embedding space page: parameters behind a form, PCA and UMAP, cached revisit, second run."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "5_Embedding_space.py"


def _captions(at) -> list[str]:
    return [c.value for c in at.caption]


def _compute(at):
    return next(b for b in at.button if b.label == "Compute projection").click()


def test_the_default_run_has_a_joint_space_and_tags_colour_the_map(app_env):
    from workbench import store
    from workbench.data.tags import tag_products
    from workbench.evaluation.results import get_artifact, put_artifact
    from workbench.viz import get_projection

    newest = app_env.kwc_run  # made after kw_run: the default unless it lacks a joint space
    art = get_artifact(newest, "diagnostics", db=app_env.path)
    with store.connect(app_env.path) as con:
        put_artifact(con, newest, "diagnostics", {**art, "space": "CCA view of the encoder outputs (this head "
                                                                 "scores pairs and has no joint space)"})
    shown = get_projection(app_env.kw_run, db=app_env.path, method="pca").frame  # test-split products
    tagged = sorted(set(shown["product_id"]))[:2]
    tag_products(app_env.eval_set, tagged, "odd ones", db=app_env.path)
    n_tagged = int(shown["product_id"].isin(tagged).sum())
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    assert at.selectbox(key="embed_run").value == app_env.kw_run
    at.radio(key="embed_method").set_value("pca").run()
    _compute(at).run()
    colours = at.selectbox(key="embed_color_by")
    assert colours.options[-1] == "tag"
    colours.set_value("tag").run()
    assert not at.exception
    names = {trace["name"] for trace in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert f"odd ones ({n_tagged})" in names and f"no tag ({len(shown) - n_tagged})" in names, names


def test_embedding_compute_pca_then_umap(app_env):
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    assert not at.exception and "Compute projection" in at.info[0].value
    assert not at.get("plotly_chart")  # nothing heavy before the button
    at.selectbox(key="embed_run").set_value(app_env.kwc_run)
    at.radio(key="embed_method").set_value("pca").run()
    assert not [s for s in at.slider if s.key == "embed_n_neighbors"]  # UMAP-only controls hidden under PCA
    _compute(at).run()
    assert not at.exception
    assert at.session_state["embed_params"]["method"] == "pca"
    assert any(c.startswith("PCA on all ") for c in _captions(at))
    assert len(at.get("plotly_chart")) == 1
    assert any(m.label == "modality gap" for m in at.metric)
    colours = at.selectbox(key="embed_color_by")
    assert colours.options == ["modality", "category", "language", "pair kind", "decision correctness"]  # no tags
    colours.set_value("language").run()  # recolour: a cache read, no recompute
    assert any("read from the projection cache" in c for c in _captions(at))

    at.radio(key="embed_method").set_value("umap").run()
    at.slider(key="embed_n_neighbors").set_value(5)
    at.slider(key="embed_min_dist").set_value(0.3)
    _compute(at).run()
    assert not at.exception
    assert any(c.startswith("UMAP (n_neighbors=5, min_dist=0.3, seed 0) fitted on all ") for c in _captions(at))

    at.toggle(key="embed_compare").set_value(True).run()
    assert not at.get("plotly_chart") and "Compute projection" in at.info[0].value  # new run: no silent UMAP
    _compute(at).run()
    assert not at.exception and len(at.get("plotly_chart")) == 2


def test_selected_items_maps_customdata_back_to_rows():
    import pandas as pd

    from workbench.ui.embedding import selected_items

    frame = pd.DataFrame({"item_id": ["a", "a", "b"], "modality": ["image", "text", "text"]})
    event = {"selection": {"points": [{"customdata": ["a", "text"]}, {"customdata": ["b", "text"]}]}}

    class Event:
        selection = event["selection"]

    assert selected_items(Event(), frame).index.tolist() == [1, 2]
    assert selected_items(None, frame).empty
