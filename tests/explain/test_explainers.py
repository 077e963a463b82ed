"""Each registered explainer on the towers and heads it covers; words; the registry; faithfulness arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from workbench.explain import (
    DeletionCurve,
    applicable,
    deletion_curve,
    explain_items,
    explain_pair,
    get_explainer,
    list_explainers,
)
from workbench.explain.faithfulness import mask_cells
from workbench.explain.words import delete_spans, merge_to_words, word_spans
from workbench.run.restore import NewText

# run name -> (default image method, grid shape, default text method)
EXPECTED = {
    "colorhist": ("color_histogram_map", (8, 8), "tfidf_terms"),
    "soft_attention_cosine": ("integrated_grad_cam", (2, 2), "integrated_gradients"),
    "cross_attention": ("integrated_grad_cam", (2, 2), "integrated_gradients"),
    "attention_fusion": ("integrated_grad_cam", (2, 2), "integrated_gradients"),
    "vit_bert": ("attention_relevancy", (4, 4), "integrated_gradients"),
    "clip": ("attention_relevancy", (4, 4), "integrated_gradients"),
    "siglip": ("attention_relevancy", (4, 4), "integrated_gradients"),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_combination_is_explained_by_its_method(restored, positives, name: str) -> None:
    models = restored(name)
    pair_id = positives(models, 1)[0]
    explanation = explain_pair(models, pair_id)
    image_method, shape, text_method = EXPECTED[name]
    assert explanation.reasons == {}
    assert (explanation.image.method, explanation.text.method) == (image_method, text_method)
    grid = np.asarray(explanation.image.relevance)
    assert grid.shape == shape and np.isfinite(grid).all() and np.abs(grid).sum() > 0
    text = models.text(models.pair(pair_id)["text_id"])
    assert [w for w, _ in explanation.text.tokens] == [text[s:e] for s, e in word_spans(text)]
    assert all(np.isfinite(v) for _, v in explanation.text.tokens)
    assert explanation.score == pytest.approx(models.score_pair_ids([pair_id])[0], abs=1e-6)


@pytest.mark.parametrize("name", ["soft_attention_cosine", "cross_attention", "attention_fusion"])
def test_token_heads_show_their_attention_weights(restored, positives, name: str) -> None:
    models = restored(name)
    pair_id = positives(models, 1)[0]
    text_method = "head_attention_text" if name == "attention_fusion" else None
    explanation = explain_pair(models, pair_id, image_method="head_attention", text_method=text_method)
    grid = np.asarray(explanation.image.relevance)
    assert explanation.image.method == f"head_attention:{name}" and grid.shape == (2, 2) and (grid >= 0).all()
    if name == "attention_fusion":  # one softmax over image and text tokens together
        total = grid.sum() + sum(v for _, v in explanation.text.tokens)
        assert 0 < grid.sum() < 1 and total == pytest.approx(1.0, abs=0.05)  # spaces/punctuation tokens dropped
    else:
        assert grid.sum() == pytest.approx(1.0, abs=1e-5)


def test_integrated_gradients_sum_to_the_score_change_and_chinese_shows_by_word(restored) -> None:
    models = restored("soft_attention_cosine")
    image_id = models.data.images["image_id"].iloc[0]
    explanation = explain_items(models, image_id, NewText("红色纯棉衬衫 男款", "zh"))
    words = [w for w, _ in explanation.text.tokens]
    assert words == ["红色", "纯棉", "衬衫", "男款"]
    assert abs(explanation.text.details["convergence_delta"]) < 0.05 * max(1.0, abs(explanation.score))


def test_chinese_character_attributions_merge_into_jieba_words() -> None:
    text = "红色纯棉衬衫 Tandem"
    chars = [(i, i + 1) for i in range(len(text))]
    values = [1, 1, 2, 2, 3, 3, 9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    tokens, spans = merge_to_words(text, chars, values)
    assert tokens == [("红色", 2.0), ("纯棉", 4.0), ("衬衫", 6.0), ("Tandem", 3.0)]  # the space's 9 is dropped
    assert delete_spans(text, [spans[1], spans[3]]) == "红色衬衫"
    english = merge_to_words("Red tote, leather", [(0, 3), (4, 6), (6, 8), None], [1.0, 0.25, 0.75, 5.0])[0]
    assert english == [("Red", 1.0), ("tote", 1.0), ("leather", 0.0)]  # word pieces summed, special token dropped


def test_tfidf_terms_show_weights_and_land_on_their_words(restored, positives) -> None:
    models = restored("colorhist")
    pair = models.pair(positives(models, 1)[0])
    explanation = explain_pair(models, pair["pair_id"])
    terms = explanation.text.details["terms"]
    assert terms and all(weight > 0 for _, weight, _ in terms)
    by_word = {w.lower(): v for w, v in explanation.text.tokens}
    for term, _, contribution in terms:
        if term in by_word and list(by_word).count(term) == 1:
            assert by_word[term] == pytest.approx(contribution, abs=1e-6)
    unknown = explain_items(models, pair["image_id"], NewText("zzqx wvvk", "en"))
    assert unknown.text.tokens == [("zzqx", 0.0), ("wvvk", 0.0)] and unknown.text.details["terms"] == []


def test_colour_histogram_map_sums_to_the_bin_contributions(restored, positives) -> None:
    models = restored("colorhist")
    explanation = explain_pair(models, positives(models, 1)[0])
    details = explanation.image.details
    total = details["color_total"] + details["gradient_total"]
    assert np.asarray(explanation.image.relevance).sum() == pytest.approx(total, abs=1e-5)
    shares = [b["share"] for b in details["color_bins"]]
    assert all(0 < s <= 1 for s in shares) and len(details["color_bins"]) <= 8


def test_a_combination_that_cannot_be_explained_gets_a_reason(restored, positives, monkeypatch) -> None:
    models = restored("soft_attention_cosine")
    pair_id = positives(models, 1)[0]

    def opaque(pairs):
        raise NotImplementedError("fusion head 'x' has no differentiable scoring path (score_tensors)")

    monkeypatch.setattr(models.head, "score_tensors", opaque)
    explanation = explain_pair(models, pair_id)
    assert explanation.image.method == "head_attention:soft_attention_cosine"  # needs no gradients
    assert explanation.text is None and "no differentiable scoring path" in explanation.reasons["text"]
    assert explanation.to_json()["text_tokens"] == [] and explanation.method == "head_attention:soft_attention_cosine"
    wrong = explain_pair(models, pair_id, text_method="tfidf_terms")
    assert wrong.text is None and "does not apply" in wrong.reasons["text"] and "tfidf" in wrong.reasons["text"]


def test_registry_lists_explainers_and_errors_list_the_choices(restored) -> None:
    assert {"integrated_grad_cam", "grad_cam", "attention_relevancy", "color_histogram_map", "keyword_color_map",
            "head_attention"} <= set(list_explainers("image"))
    assert {"integrated_gradients", "tfidf_terms", "keyword_terms", "head_attention_text"} <= set(
        list_explainers("text"))
    with pytest.raises(KeyError, match="not found. Available"):
        get_explainer("lime")
    with pytest.raises(ValueError, match="allowed"):
        list_explainers("audio")
    models = restored("vit_bert")
    assert [e.name for e in applicable(models, "image")] == ["attention_relevancy", "grad_cam"]
    with pytest.raises(ValueError, match="explains the text"):
        explain_pair(models, models.data.pairs["pair_id"].iloc[0], image_method="integrated_gradients")


def test_deletion_area_is_the_area_between_the_curves() -> None:
    curve = DeletionCurve("image", "m", np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.0, 0.0]),
                          np.array([1.0, 0.5, 0.0]), 2)
    assert curve.area == pytest.approx(0.25)  # trapezoid of [0, 0.5, 0] over [0, 0.5, 1]
    assert curve.area_norm == pytest.approx(0.25)
    flat = DeletionCurve("text", "m", np.array([0.0, 1.0]), np.array([0.3, 0.3]), np.array([0.3, 0.3]), 1)
    assert flat.area == 0 and np.isnan(flat.area_norm)


def test_mask_cells_fills_exactly_the_cells_with_the_mean_colour() -> None:
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:, 30:] = 200
    masked = np.asarray(mask_cells(Image.fromarray(pixels), (2, 3), np.array([0, 5]), (0.0, 0.0, 1.0, 1.0)))
    assert (masked[:20, :20] == 100).all() and (masked[20:, 40:] == 100).all()
    assert (masked[:20, 20:30] == 0).all() and (masked[20:, 30:40] == 200).all()


def test_text_deletion_removes_the_most_relevant_words_first(restored, positives) -> None:
    models = restored("colorhist")
    pair = models.pair(positives(models, 1)[0])
    explanation = explain_pair(models, pair["pair_id"])
    curve = deletion_curve(models, pair["image_id"], pair["text_id"], explanation.text, "text", n_random=3)
    assert curve.n_units == len(explanation.text.tokens) and curve.deletion.shape == curve.random.shape == (11,)
    assert curve.deletion[0] == pytest.approx(explanation.score, abs=1e-5)
    assert curve.deletion[-1] == pytest.approx(curve.random[-1], abs=1e-6)  # everything deleted either way
