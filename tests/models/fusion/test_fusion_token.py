"""Token heads: cross-attention, soft attention cosine, attention fusion (masks, weights, token requirements)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fusion_task import L_IMG, L_TXT, fitted, make_data

from workbench.models.fusion import create_fusion_head


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


@pytest.mark.parametrize("name", ["cross_attention", "soft_attention_cosine", "attention_fusion"])
def test_token_heads_need_tokens(name: str) -> None:
    data, splits = make_data()
    bare = dataclasses.replace(data, text_tokens=None, text_mask=None)
    with pytest.raises(ValueError, match=f"{name} needs token-level features"):
        create_fusion_head(name).fit(bare, splits["train"], splits["val"], seed=0, device="cpu")
    assert create_fusion_head(name).uses_tokens


@pytest.mark.parametrize("name", ["cross_attention", "soft_attention_cosine", "attention_fusion"])
def test_token_heads_need_one_real_token_per_item(name: str) -> None:
    data, splits = make_data()
    mask = data.text_mask.copy()
    mask[[4, 9]] = False
    empty = dataclasses.replace(data, text_mask=mask)
    with pytest.raises(ValueError, match=rf"{name} needs at least one unmasked token per item; text rows \[4, 9\]"):
        create_fusion_head(name).fit(empty, splits["train"], splits["val"], seed=0, device="cpu")
