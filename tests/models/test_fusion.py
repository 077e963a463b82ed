"""Fusion heads on a synthetic task: 8 products, image and text vectors = product prototype + noise.

Images and texts live in different spaces (different dims, unrelated prototypes), so zero-shot cosine is
impossible there and a learned mapping is needed; the `cosine` head gets a shared-space variant instead.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from workbench.models.fusion import (
    FusionData,
    FusionHead,
    PairSet,
    create_fusion_head,
    get_fusion_class,
    get_fusion_spec,
    list_fusion_heads,
    register_fusion_head,
)
from workbench.models.fusion_heads import info_nce

N_PRODUCTS, PER_PRODUCT = 8, 11
SPLIT_OF_POSITION = ["train"] * 5 + ["val"] * 3 + ["test"] * 3
D_IMG, D_TXT, L_IMG, L_TXT, D_TOK_IMG, D_TOK_TXT = 24, 20, 5, 4, 12, 10

# name -> (options, trained with a seed, uses the shared-space data). Every registered head needs an entry.
FIXTURES: dict[str, tuple[dict[str, Any], bool, bool]] = {
    "cosine": ({}, False, True),
    "contrastive": ({"dim": 16, "epochs": 40, "lr": 1e-2, "batch_size": 32, "patience": 8}, True, False),
    "cca": ({"n_components": 6}, False, False),
    "concat_mlp": ({"width": 16, "hidden": 32, "epochs": 40, "lr": 3e-3, "batch_size": 32}, True, False),
    "cross_attention": (
        {"width": 32, "num_heads": 4, "epochs": 40, "lr": 3e-3, "batch_size": 32, "patience": 8},
        True,
        False,
    ),
    "attribute_tags": ({"width": 16, "epochs": 40, "lr": 3e-3, "batch_size": 32}, True, False),
    "late_fusion": (
        {
            "heads": [
                {"type": "cca", "n_components": 6},
                {"type": "concat_mlp", "width": 16, "hidden": 32, "epochs": 15, "lr": 3e-3, "batch_size": 32},
            ]
        },
        True,
        False,
    ),
    "multitask": (
        {"width": 16, "hidden": 32, "epochs": 40, "lr": 3e-3, "batch_size": 32, "category_weight": 1.0},
        True,
        False,
    ),
    "soft_attention_cosine": (
        {"width": 16, "epochs": 40, "lr": 1e-2, "batch_size": 32, "patience": 8},
        True,
        False,
    ),
    "attention_fusion": (
        {"width": 32, "num_heads": 2, "hidden": 32, "epochs": 12, "lr": 5e-3, "batch_size": 64, "patience": 4},
        True,
        False,
    ),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models train faster on one thread, and far faster than two threads on busy shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tags(product: int) -> np.ndarray:
    tags = np.zeros(6, dtype=np.float32)
    tags[product % 3] = 1  # colour
    tags[3 + (product // 3) % 3] = 1  # material
    return tags


@functools.cache
def make_data(shared: bool = False) -> tuple[FusionData, dict[str, PairSet]]:
    """Items of each product are split by position; pairs are all positives plus as many random negatives."""
    rng = np.random.default_rng(0)
    img_proto = rng.normal(size=(N_PRODUCTS, D_IMG))
    txt_proto = img_proto if shared else rng.normal(size=(N_PRODUCTS, D_TXT))
    product = np.repeat(np.arange(N_PRODUCTS), PER_PRODUCT)
    split = np.array(SPLIT_OF_POSITION * N_PRODUCTS)
    n = len(product)
    # Random scales and an offset: the heads must normalise their own inputs.
    image_vecs = (img_proto[product] + 0.7 * rng.normal(size=(n, D_IMG))) * rng.uniform(0.5, 3, (n, 1)) + 2.0
    text_vecs = (txt_proto[product] + 0.7 * rng.normal(size=(n, txt_proto.shape[1]))) * rng.uniform(0.5, 3, (n, 1))
    region_proto = rng.normal(size=(N_PRODUCTS, L_IMG, D_TOK_IMG))
    word_proto = rng.normal(size=(N_PRODUCTS, L_TXT, D_TOK_TXT))
    image_tokens = region_proto[product] + 0.5 * rng.normal(size=(n, L_IMG, D_TOK_IMG))
    text_tokens = word_proto[product] + 0.5 * rng.normal(size=(n, L_TXT, D_TOK_TXT))
    image_mask = np.arange(L_IMG)[None, :] < rng.integers(3, L_IMG + 1, n)[:, None]
    text_mask = np.arange(L_TXT)[None, :] < rng.integers(2, L_TXT + 1, n)[:, None]
    image_tokens[~image_mask] = 50 * rng.normal(size=(int((~image_mask).sum()), D_TOK_IMG))  # padding garbage
    category = product % 4
    category[::7] = -1
    tags = np.stack([_tags(p) for p in product])
    data = FusionData(
        image_vecs=image_vecs.astype(np.float32),
        text_vecs=text_vecs.astype(np.float32),
        image_tokens=image_tokens.astype(np.float32),
        image_mask=image_mask,
        text_tokens=text_tokens.astype(np.float32),
        text_mask=text_mask,
        image_tags=tags,
        text_tags=tags.copy(),
        image_product=np.array([f"p{p}" for p in product], dtype=object),
        text_product=np.array([f"p{p}" if i % 17 else None for i, p in enumerate(product)], dtype=object),
        image_category=category,
    )
    splits = {}
    for name in ("train", "val", "test"):
        items = np.flatnonzero(split == name)
        ii, tt = np.meshgrid(items, items, indexing="ij")
        ii, tt = ii.ravel(), tt.ravel()
        same = product[ii] == product[tt]
        positive = same & np.array([data.text_product[t] is not None for t in tt])
        neg = rng.choice(np.flatnonzero(~same), size=int(positive.sum()), replace=False)
        pos = np.flatnonzero(positive)
        splits[name] = PairSet(
            np.r_[ii[pos], ii[neg]], np.r_[tt[pos], tt[neg]], np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        )
    return data, splits


def fit_head(name: str, seed: int = 0, **overrides: Any) -> tuple[FusionHead, dict[str, Any]]:
    options, _, shared = FIXTURES[name]
    data, splits = make_data(shared)
    head = create_fusion_head(name, **{**options, **overrides})
    curves = head.fit(data, splits["train"], splits["val"], seed=seed, device="cpu")
    return head, curves


@functools.cache
def fitted(name: str) -> tuple[FusionHead, dict[str, Any]]:
    return fit_head(name)


def test_every_registered_head_has_fixture_options() -> None:
    missing = sorted(set(list_fusion_heads()) - set(FIXTURES))
    assert not missing, f"add FIXTURES entries for newly registered fusion heads: {missing}"


@pytest.mark.parametrize("name", list_fusion_heads())
def test_registry_sweep(name: str) -> None:
    assert name in FIXTURES, f"no fixture options for fusion head '{name}'"
    options, _, shared = FIXTURES[name]
    data, splits = make_data(shared)
    head, curves = fitted(name)
    spec = get_fusion_spec(name)
    assert spec.cls is get_fusion_class(name) and spec.config_keys == tuple(spec.defaults)
    assert create_fusion_head(name, **head.get_config_dict()).get_config_dict() == head.get_config_dict()
    assert set(head.get_config_dict()) == set(head.config_keys)

    assert set(curves) >= {"train_loss", "val_loss", "best_epoch"}
    assert len(curves["train_loss"]) == len(curves["val_loss"])
    assert 0 <= curves["best_epoch"] <= len(curves["val_loss"])
    assert (curves["best_epoch"] == 0) == (len(curves["val_loss"]) == 0)

    for split in ("val", "test"):
        pairs = splits[split]
        scores = head.score_pairs(data, pairs.image_idx, pairs.text_idx)
        assert scores.shape == (len(pairs),) and np.isfinite(scores).all()
    test = splits["test"]
    auc = roc_auc_score(test.label, head.score_pairs(data, test.image_idx, test.text_idx))
    assert auc > 0.8, f"{name}: held-out ROC-AUC {auc:.3f}"

    images, texts = np.unique(test.image_idx)[:7], np.unique(test.text_idx)[:5]
    matrix = head.score_matrix(data, images, texts, chunk=10)
    assert matrix.shape == (len(texts), len(images))
    jj, ii = np.meshgrid(np.arange(len(texts)), np.arange(len(images)), indexing="ij")
    expected = head.score_pairs(data, images[ii.ravel()], texts[jj.ravel()]).reshape(matrix.shape)
    np.testing.assert_allclose(matrix, expected, rtol=1e-4, atol=1e-5)

    joint = head.embed(data)
    assert (joint is not None) == head.embeds
    if joint is not None:
        assert joint[0].shape[0] == len(data.image_vecs) and joint[1].shape[0] == len(data.text_vecs)
        assert joint[0].shape[1] == joint[1].shape[1]


@pytest.mark.parametrize("name", list_fusion_heads())
def test_same_seed_same_scores_and_seed_matters(name: str) -> None:
    _, seeded, shared = FIXTURES[name]
    data, splits = make_data(shared)
    test = splits["test"]
    reference = fitted(name)[0].score_pairs(data, test.image_idx, test.text_idx)
    again = fit_head(name, seed=0)[0].score_pairs(data, test.image_idx, test.text_idx)
    np.testing.assert_array_equal(reference, again)
    if seeded:
        other = fit_head(name, seed=1)[0].score_pairs(data, test.image_idx, test.text_idx)
        assert not np.allclose(reference, other)


def test_registry_errors_name_the_valid_choices() -> None:
    with pytest.raises(KeyError, match=r"Fusion head 'nope' not found\. Available: \[.*'cosine'"):
        create_fusion_head("nope")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['dimm'\].*Valid keys: \['dim', 'hidden'"):
        create_fusion_head("contrastive", dimm=3)

    class Impostor(FusionHead):
        name = "cosine"

        def fit(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return {}

    with pytest.raises(ValueError, match="already registered"):
        register_fusion_head(Impostor)
    assert get_fusion_class("cosine") is not Impostor


def test_scoring_before_fit_is_an_error() -> None:
    data, splits = make_data()
    with pytest.raises(RuntimeError, match="call fit"):
        create_fusion_head("concat_mlp").score_pairs(data, splits["val"].image_idx, splits["val"].text_idx)


def test_contract_validation() -> None:
    with pytest.raises(ValueError, match="one length"):
        PairSet(np.arange(3), np.arange(2), np.ones(3))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        PairSet(np.arange(2), np.arange(2), np.array([0, 2]))
    data, _ = make_data()
    with pytest.raises(ValueError, match="image_tags has 3 rows; expected 88"):
        dataclasses.replace(data, image_tags=data.image_tags[:3])
    pairs = PairSet(np.arange(4), np.arange(4), np.array([1, 0, 1, 0]))
    assert len(pairs.subset(pairs.label == 0)) == 2 and pairs.positives().label.tolist() == [1, 1]


def _tiny_data(image_vecs: np.ndarray, text_vecs: np.ndarray) -> FusionData:
    ni, nt = len(image_vecs), len(text_vecs)
    return FusionData(
        image_vecs=np.asarray(image_vecs, np.float32),
        text_vecs=np.asarray(text_vecs, np.float32),
        image_tokens=None,
        image_mask=None,
        text_tokens=None,
        text_mask=None,
        image_tags=np.zeros((ni, 0), np.float32),
        text_tags=np.zeros((nt, 0), np.float32),
        image_product=np.array(["a"] * ni, dtype=object),
        text_product=np.array(["a"] * nt, dtype=object),
        image_category=np.full(ni, -1),
    )


def test_cosine_hand_computed() -> None:
    data = _tiny_data([[3, 4], [1, 0]], [[4, 3], [0, 2]])
    head = create_fusion_head("cosine")
    scores = head.score_pairs(data, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(scores, [24 / 25, 8 / 10, 4 / 5, 0.0], atol=1e-6)
    np.testing.assert_allclose(head.score_matrix(data, [0, 1], [0, 1]), [[24 / 25, 4 / 5], [8 / 10, 0.0]], atol=1e-6)


def test_cosine_dimension_mismatch_message() -> None:
    data = _tiny_data(np.ones((2, 512)), np.ones((2, 384)))
    message = (
        "cosine needs a dual encoder with a shared space; got image dim 512 and text dim 384 — "
        "use 'contrastive' or 'cca'"
    )
    pairs = PairSet(np.array([0]), np.array([1]), np.array([1]))
    with pytest.raises(ValueError) as error:
        create_fusion_head("cosine").fit(data, pairs, pairs, seed=0, device="cpu")
    assert str(error.value) == message


def test_contrastive_embeddings_and_cosine_scores() -> None:
    data, splits = make_data()
    head, _ = fitted("contrastive")
    img, txt = head.embed(data)
    assert img.shape == (len(data.image_vecs), 16) and txt.shape == (len(data.text_vecs), 16)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    test = splits["test"]
    expected = np.sum(img[test.image_idx] * txt[test.text_idx], axis=1)
    np.testing.assert_allclose(head.score_pairs(data, test.image_idx, test.text_idx), expected, atol=1e-6)


def test_info_nce_masks_same_product_items_instead_of_using_them_as_negatives() -> None:
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    scale = torch.tensor(3.0)
    product = torch.tensor([0, 0, 1])
    masked = info_nce(z, z, scale, product[:, None] == product[None, :])
    unmasked = info_nce(z, z, scale, torch.zeros(3, 3, dtype=torch.bool))
    # rows 0 and 1 no longer compete with each other; row 2 still has both as negatives
    expected = (2 * math.log(1 + math.exp(-3)) + math.log(1 + 2 * math.exp(-3))) / 3
    assert masked.item() == pytest.approx(expected, rel=1e-4)
    assert unmasked.item() > math.log(2) * 2 / 3


def test_cross_attention_weights() -> None:
    data, splits = make_data()
    head, _ = fitted("cross_attention")
    pairs = splits["test"]
    weights = head.attention_weights(data, pairs.image_idx, pairs.text_idx)
    assert weights.shape == (len(pairs), L_TXT, L_IMG)
    np.testing.assert_allclose(weights.sum(axis=-1), 1, atol=1e-5)
    masked = ~data.image_mask[pairs.image_idx]
    assert masked.any() and np.all(weights.transpose(1, 0, 2)[:, masked] == 0)
    other_text = np.roll(pairs.text_idx, 1)
    changed = head.attention_weights(data, pairs.image_idx, other_text)
    assert not np.allclose(weights, changed)


def test_cross_attention_needs_tokens() -> None:
    data, splits = make_data()
    bare = dataclasses.replace(data, image_tokens=None, image_mask=None)
    with pytest.raises(ValueError, match="token-level features"):
        create_fusion_head("cross_attention").fit(bare, splits["train"], splits["val"], seed=0, device="cpu")


def test_attribute_tags_change_the_score() -> None:
    data, splits = make_data()
    head, _ = fitted("attribute_tags")
    pairs = splits["test"]
    before = head.score_pairs(data, pairs.image_idx, pairs.text_idx)
    flipped = data.text_tags.copy()
    flipped[pairs.text_idx[0]] = 1 - flipped[pairs.text_idx[0]]
    after = head.score_pairs(dataclasses.replace(data, text_tags=flipped), pairs.image_idx, pairs.text_idx)
    touched = pairs.text_idx == pairs.text_idx[0]
    assert np.all(after[touched] != before[touched])
    np.testing.assert_array_equal(after[~touched], before[~touched])


def test_multitask_category_accuracy_above_chance() -> None:
    data, splits = make_data()
    head, _ = fitted("multitask")
    accuracy = head.category_accuracy(data, np.unique(splits["test"].image_idx))
    assert accuracy > 0.6  # 4 categories: chance is 0.25
    with pytest.raises(ValueError, match="known category"):
        head.category_accuracy(data, np.array([0]))  # image 0 has category -1


def test_late_fusion_combines_its_sub_heads_on_val() -> None:
    data, splits = make_data()
    head, curves = fitted("late_fusion")
    assert [h.name for h in head.sub_heads] == ["cca", "concat_mlp"]
    assert len(curves["heads"]) == 2 and len(curves["weights"]) == 2 and min(curves["weights"]) > 0
    val, test = splits["val"], splits["test"]
    val_sub = np.stack([h.score_pairs(data, val.image_idx, val.text_idx) for h in head.sub_heads], axis=1)
    mean, std = val_sub.mean(axis=0), val_sub.std(axis=0)
    refit = LogisticRegression().fit((val_sub - mean) / std, val.label)
    np.testing.assert_allclose(refit.coef_[0], curves["weights"], rtol=1e-6)
    sub = np.stack([h.score_pairs(data, test.image_idx, test.text_idx) for h in head.sub_heads], axis=1)
    expected = refit.decision_function((sub - mean) / std)
    np.testing.assert_allclose(head.score_pairs(data, test.image_idx, test.text_idx), expected, rtol=1e-5)
    assert not create_fusion_head("late_fusion").uses_tokens
    assert create_fusion_head("late_fusion", heads=[{"type": "cross_attention"}]).uses_tokens
    with pytest.raises(ValueError, match="non-empty list"):
        create_fusion_head("late_fusion", heads=[])


def test_early_stopping_when_val_loss_rises() -> None:
    """Train labels are flipped, so learning the train split makes the val loss rise."""
    data, splits = make_data()
    train = splits["train"]
    flipped = PairSet(train.image_idx, train.text_idx, 1 - train.label)
    calls: list[tuple[int, int, dict[str, float]]] = []
    head = create_fusion_head("concat_mlp", width=16, hidden=32, epochs=50, lr=3e-3, batch_size=32, patience=3)
    curves = head.fit(data, flipped, splits["val"], seed=0, device="cpu", progress=lambda *args: calls.append(args))
    n = len(curves["val_loss"])
    assert curves["best_epoch"] < 50 and n == len(curves["train_loss"]) == curves["best_epoch"] + 3
    assert curves["val_loss"][curves["best_epoch"] - 1] == min(curves["val_loss"])
    assert [c[0] for c in calls] == list(range(1, n + 1)) and {c[1] for c in calls} == {50}
    assert calls[-1][2]["best_epoch"] == curves["best_epoch"]


def test_multitask_stores_val_category_accuracy_in_its_curves() -> None:
    data, splits = make_data()
    head, curves = fitted("multitask")
    images = np.unique(splits["val"].image_idx)
    known = images[data.image_category[images] >= 0]
    assert curves["val_category_accuracy"] == head.category_accuracy(data, known)
    assert curves["val_category_accuracy"] > 0.6


def test_soft_attention_weights_sum_to_one_over_regions_and_follow_the_text() -> None:
    data, splits = make_data()
    head, _ = fitted("soft_attention_cosine")
    pairs = splits["test"]
    weights = head.attention_weights(data, pairs.image_idx, pairs.text_idx)
    assert weights.shape == (len(pairs), L_IMG)
    np.testing.assert_allclose(weights.sum(axis=1), 1, atol=1e-5)
    masked = ~data.image_mask[pairs.image_idx]
    assert masked.any() and np.all(weights[masked] == 0)
    changed = head.attention_weights(data, pairs.image_idx, np.roll(pairs.text_idx, 1))
    assert not np.allclose(weights, changed)


def _masked_text_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def test_soft_attention_score_is_a_scaled_cosine_of_attended_image_and_text() -> None:
    data, splits = make_data()
    head, _ = fitted("soft_attention_cosine")
    pairs = splits["test"]
    model = head.model.eval()
    with torch.inference_mode():
        img, img_mask, txt, txt_mask = head._inputs(data, pairs.image_idx, pairs.text_idx)
        text = _masked_text_mean(model.text(txt), txt_mask)
        attended, _ = model.attend(model.image(img), img_mask, text)
        cosine = F.cosine_similarity(attended, text, dim=-1)
        expected = model.log_scale.exp() * cosine + model.bias
    np.testing.assert_allclose(head.score_pairs(data, pairs.image_idx, pairs.text_idx), expected.numpy(), rtol=1e-5)


def test_attention_fusion_depends_on_both_modalities() -> None:
    data, splits = make_data()
    head, _ = fitted("attention_fusion")
    pairs = splits["test"]
    base = head.score_pairs(data, pairs.image_idx, pairs.text_idx)
    fused = head.fused(data, pairs.image_idx, pairs.text_idx)
    assert fused.shape == (len(pairs), 32)
    other_image = head.score_pairs(data, np.roll(pairs.image_idx, 1), pairs.text_idx)
    other_text = head.score_pairs(data, pairs.image_idx, np.roll(pairs.text_idx, 1))
    assert np.abs(other_image - base).max() > 1e-3 and np.abs(other_text - base).max() > 1e-3
    # padded image regions do not matter, whatever they hold
    noisy = data.image_tokens.copy()
    noisy[~data.image_mask] = 1e3
    again = head.score_pairs(dataclasses.replace(data, image_tokens=noisy), pairs.image_idx, pairs.text_idx)
    np.testing.assert_allclose(again, base, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["soft_attention_cosine", "attention_fusion"])
def test_token_heads_need_tokens(name: str) -> None:
    data, splits = make_data()
    bare = dataclasses.replace(data, text_tokens=None, text_mask=None)
    with pytest.raises(ValueError, match=f"{name} needs token-level features"):
        create_fusion_head(name).fit(bare, splits["train"], splits["val"], seed=0, device="cpu")
