"""AppTest of the Embedding space page: parameters behind a form, PCA and UMAP, cached revisit, second run."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "5_Embedding_space.py"


def _captions(at) -> list[str]:
    return [c.value for c in at.caption]


def test_embedding_compute_pca_then_umap(app_env):
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    assert not at.exception and "Compute projection" in at.info[0].value
    assert not at.get("plotly_chart")  # nothing heavy before the button
    at.selectbox(key="embed_run").set_value(app_env.kwc_run)
    at.radio(key="embed_method").set_value("pca")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state["embed_params"]["method"] == "pca"
    assert any(c.startswith("PCA on all ") for c in _captions(at))
    assert len(at.get("plotly_chart")) == 1
    assert any(m.label == "modality gap" for m in at.metric)
    at.selectbox(key="embed_color_by").set_value("correct").run()  # recolour: a cache read, no recompute
    assert any("read from the projection cache" in c for c in _captions(at))

    at.radio(key="embed_method").set_value("umap")
    at.slider(key="embed_n_neighbors").set_value(5)
    at.slider(key="embed_min_dist").set_value(0.3)
    at.button[0].click().run()
    assert not at.exception
    assert any(c.startswith("UMAP (n_neighbors=5, min_dist=0.3, seed 0) fitted on all ") for c in _captions(at))

    at.toggle(key="embed_compare").set_value(True).run()
    assert not at.get("plotly_chart") and "Compute projection" in at.info[0].value  # new run: no silent UMAP
    at.button[0].click().run()
    assert not at.exception and len(at.get("plotly_chart")) == 2


def test_selected_items_maps_customdata_back_to_rows():
    import pandas as pd

    from workbench.ui.analysis import selected_items

    frame = pd.DataFrame({"item_id": ["a", "a", "b"], "modality": ["image", "text", "text"]})
    event = {"selection": {"points": [{"customdata": ["a", "text"]}, {"customdata": ["b", "text"]}]}}

    class Event:
        selection = event["selection"]

    assert selected_items(Event(), frame).index.tolist() == [1, 2]
    assert selected_items(None, frame).empty
