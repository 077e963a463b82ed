"""Joint-space heads: cosine (hand-computed), contrastive (embeddings, InfoNCE masking), cca."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fusion_task import fitted, make_data, tiny_data

from workbench.models.fusion import PairSet, create_fusion_head, info_nce


def test_cosine_hand_computed() -> None:
    data = tiny_data([[3, 4], [1, 0]], [[4, 3], [0, 2]])
    head = create_fusion_head("cosine")
    scores = head.score_pairs(data, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(scores, [24 / 25, 8 / 10, 4 / 5, 0.0], atol=1e-6)
    np.testing.assert_allclose(head.score_matrix(data, [0, 1], [0, 1]), [[24 / 25, 4 / 5], [8 / 10, 0.0]], atol=1e-6)


def test_cosine_dimension_mismatch_message() -> None:
    data = tiny_data(np.ones((2, 512)), np.ones((2, 384)))
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


def test_cca_rejects_more_components_than_the_data_allows() -> None:
    data, splits = make_data()
    with pytest.raises(ValueError, match=r"cca n_components must be in \[1, 20\].*got 21"):
        create_fusion_head("cca", n_components=21).fit(data, splits["train"], splits["val"], seed=0, device="cpu")
