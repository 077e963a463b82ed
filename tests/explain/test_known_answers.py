"""The explanations the issue asks to get right: the keyword token, the colour on the left, deletion vs random."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from workbench.explain import deletion_curve, explain_items, explain_pair
from workbench.run.restore import NewImage, NewText, restore_run_models


@pytest.fixture(scope="module")
def keyword_models(two_runs_db):
    """The two keyword runs: cosine (kw) and contrastive (kwc) heads over the keyword fake encoders."""
    return {name: restore_run_models(run, db=two_runs_db.path) for name, run in (("kw", two_runs_db.kw_run),
                                                                               ("kwc", two_runs_db.kwc_run))}


def _halves(left: tuple[int, int, int], right: tuple[int, int, int], size: int = 64) -> Image.Image:
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[:, : size // 2] = left
    pixels[:, size // 2 :] = right
    return Image.fromarray(pixels)


@pytest.mark.parametrize("name", ["kw", "kwc"])
def test_the_keyword_token_gets_the_top_text_attribution(keyword_models, name: str) -> None:
    models = keyword_models[name]
    photo = NewImage(Image.new("RGB", (64, 64), (200, 30, 30)))
    explanation = explain_items(models, photo, NewText("Cotton shirt in red, slim fit", "en"))
    assert explanation.text.method == "keyword_terms"
    words = [w for w, _ in explanation.text.tokens]
    assert words == ["Cotton", "shirt", "in", "red", "slim", "fit"]
    values = dict(explanation.text.tokens)
    assert max(values, key=lambda w: abs(values[w])) == "red"
    assert values["red"] > 0 and all(v == 0 for w, v in values.items() if w != "red")


def test_a_matching_colour_in_the_left_half_gets_more_relevance_on_the_left(keyword_models) -> None:
    models = keyword_models["kw"]
    for photo, text, left_wins in ((_halves((200, 30, 30), (240, 240, 240)), "red shirt", True),
                                   (_halves((240, 240, 240), (200, 30, 30)), "red shirt", False),
                                   (_halves((30, 70, 200), (20, 20, 20)), "a blue cap", True)):
        explanation = explain_items(models, NewImage(photo), NewText(text, "en"))
        grid = np.asarray(explanation.image.relevance)
        assert explanation.image.method == "keyword_color_map" and grid.shape == (8, 8)
        left, right = grid[:, :4].sum(), grid[:, 4:].sum()
        assert (left > right) == left_wins, (text, left, right)
        assert (grid[:, :4] > 0).all() == left_wins and (grid[:, 4:] > 0).all() != left_wins


def test_deletion_curves_fall_below_random_on_a_trained_tower(restored, positives) -> None:
    models = restored("squares")
    ids = positives(models, 12)
    curves = []
    for pair_id in ids:
        explanation = explain_pair(models, pair_id)
        assert explanation.image.method == "integrated_grad_cam"
        assert np.asarray(explanation.image.relevance).shape == (4, 4)
        pair = models.pair(pair_id)
        curves.append(deletion_curve(models, pair["image_id"], pair["text_id"], explanation.image, "image",
                                     n_random=6))
    deletion = np.mean([c.deletion for c in curves], axis=0)
    random = np.mean([c.random for c in curves], axis=0)
    top = (curves[0].fractions > 0) & (curves[0].fractions <= 0.5)  # deleting the top 10% … 50% of the cells
    assert (deletion[top] < random[top]).all(), (deletion, random)
    assert np.mean([c.area for c in curves]) > 0
    assert sum(c.area > 0 for c in curves) >= 0.75 * len(curves)
