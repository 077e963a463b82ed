"""Token heads: pair scorers over image region tokens and text tokens (with masks; True = real token).

Cross-attention reads each pair's tokens whole. Soft attention and attention fusion expose per-item encodings
(`_TokenModel`), so that scoring encodes each distinct item of a chunk once — which matters when a whole
retrieval gallery (every text × every image) is scored.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.models.fusion.base import FusionData, PairSet, PairTensors, as_pair_index
from workbench.models.fusion.pair import PairHead, interactions
from workbench.models.fusion.training import SCORE_CHUNK, TrainOptions, mlp


def token_arrays(data: FusionData, head: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image tokens, image mask, text tokens, text mask (an absent mask means every token is real)."""
    if data.image_tokens is None or data.text_tokens is None:
        raise ValueError(
            f"{head} needs token-level features; data.image_tokens/text_tokens are None (choose token-level encoders)"
        )
    img, txt = data.image_tokens, data.text_tokens
    img_mask = np.ones(img.shape[:2], dtype=bool) if data.image_mask is None else np.asarray(data.image_mask, bool)
    txt_mask = np.ones(txt.shape[:2], dtype=bool) if data.text_mask is None else np.asarray(data.text_mask, bool)
    return img, img_mask, txt, txt_mask


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1)


class _TokenPairHead(PairHead):
    """A pair scorer whose model reads (image tokens, image mask, text tokens, text mask)."""

    needs_tokens = True

    def _check_data(self, data: FusionData) -> None:
        """Token features, and at least one real token per item."""
        _, img_mask, _, txt_mask = token_arrays(data, self.name)
        for side, mask in (("image", img_mask), ("text", txt_mask)):
            empty = np.flatnonzero(~mask.any(axis=1))
            if len(empty):
                raise ValueError(
                    f"{self.name} needs at least one unmasked token per item; {side} rows "
                    f"{empty[:10].tolist()} have none"
                )

    def _inputs(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        img, img_mask, txt, txt_mask = token_arrays(data, self.name)
        arrays = (np.asarray(img[ii], np.float32), img_mask[ii], np.asarray(txt[tt], np.float32), txt_mask[tt])
        return tuple(torch.from_numpy(a).to(self._device) for a in arrays)

    def _tensor_inputs(self, pairs: PairTensors) -> tuple[torch.Tensor, ...]:
        img_mask, txt_mask = pairs.masks()
        return pairs.image_tokens, img_mask, pairs.text_tokens, txt_mask


class _CrossAttention(nn.Module):
    def __init__(self, d_img: int, d_txt: int, width: int, num_heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.LayerNorm(d_img), nn.Linear(d_img, width))
        self.text = nn.Sequential(nn.LayerNorm(d_txt), nn.Linear(d_txt, width))
        self.attention = nn.ModuleList(
            nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True) for _ in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers - 1))
        self.out = mlp(4 * width, 2 * width, 1, dropout)

    def attend(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, *, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Text tokens, their image context from the last layer, and its head-averaged weights (B, Lt, Li)."""
        v, query = self.image(img), self.text(txt)
        x, weights = query, None
        for k, attention in enumerate(self.attention):
            context, weights = attention(x, v, v, key_padding_mask=~img_mask, need_weights=need_weights)
            if k < len(self.norms):
                x = self.norms[k](x + context)
        return query, context, weights

    def forward(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor
    ) -> torch.Tensor:
        query, context, _ = self.attend(img, img_mask, txt)
        return self.out(interactions(_masked_mean(query, txt_mask), _masked_mean(context, txt_mask))).squeeze(-1)


class CrossAttentionHead(_TokenPairHead):
    name = "cross_attention"
    description = (
        "Text tokens attend to image region tokens (1-2 multi-head attention layers); pooled text and "
        "attended context feed an MLP logit; BCE on labelled pairs."
    )
    defaults = {"width": 64, "num_heads": 4, "layers": 1, "dropout": 0.1, **TrainOptions.defaults(batch_size=128)}

    def _setup(self, data: FusionData, train: PairSet) -> nn.Module:
        o = self.options
        if o["layers"] not in (1, 2):
            raise ValueError(f"cross_attention layers must be 1 or 2; got {o['layers']}")
        img, _, txt, _ = token_arrays(data, self.name)
        return _CrossAttention(img.shape[2], txt.shape[2], o["width"], o["num_heads"], o["layers"], o["dropout"])

    def attention_weights(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        """(N, Lt, Li) last-layer weights (averaged over heads); rows sum to 1 over unmasked image regions."""
        self._check_fitted()
        self._check_data(data)
        ii, tt = as_pair_index(image_idx, text_idx)
        img, _, txt, _ = token_arrays(data, self.name)
        out = np.empty((len(ii), txt.shape[1], img.shape[1]), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(ii), SCORE_CHUNK):
                part = slice(s, s + SCORE_CHUNK)
                v, v_mask, t, _ = self._inputs(data, ii[part], tt[part])
                out[part] = self.model.attend(v, v_mask, t, need_weights=True)[2].cpu().numpy()
        return out


class _TokenModel(nn.Module):
    """A token pair model: per-item ``encode_image`` / ``encode_text`` and a ``match`` of encoded pairs."""

    def forward(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.match(self.encode_image(img, img_mask), img_mask, self.encode_text(txt, txt_mask), txt_mask)


class _EncodedTokenPairHead(_TokenPairHead):
    """A token head whose `_TokenModel` encodes items independently of the pair; scoring encodes each once."""

    def _encoded(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The model's per-item encodings of the pairs' images and texts, each distinct item encoded once."""
        img, img_mask, txt, txt_mask = token_arrays(data, self.name)
        ui, inv_i = np.unique(ii, return_inverse=True)
        ut, inv_t = np.unique(tt, return_inverse=True)
        v_mask = torch.from_numpy(img_mask[ui]).to(self._device)
        t_mask = torch.from_numpy(txt_mask[ut]).to(self._device)
        v = self.model.encode_image(torch.from_numpy(np.asarray(img[ui], np.float32)).to(self._device), v_mask)
        t = self.model.encode_text(torch.from_numpy(np.asarray(txt[ut], np.float32)).to(self._device), t_mask)
        inv_i, inv_t = torch.from_numpy(inv_i).to(self._device), torch.from_numpy(inv_t).to(self._device)
        return v[inv_i], v_mask[inv_i], t[inv_t], t_mask[inv_t]

    def _score_chunk(self, data: FusionData, ii: np.ndarray, tt: np.ndarray) -> torch.Tensor:
        return self.model.match(*self._encoded(data, ii, tt))


class _SoftAttentionCosine(_TokenModel):
    """Pooled text → query; scaled dot-product soft attention over image regions; cosine × learnable scale."""

    def __init__(self, d_img: int, d_txt: int, width: int, temperature: float) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.LayerNorm(d_img), nn.Linear(d_img, width))
        self.text = nn.Sequential(nn.LayerNorm(d_txt), nn.Linear(d_txt, width))
        self.key = nn.Linear(width, width, bias=False)
        self.query = nn.Linear(width, width, bias=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.bias = nn.Parameter(torch.zeros(()))

    def encode_image(self, img: torch.Tensor, img_mask: torch.Tensor) -> torch.Tensor:
        return self.image(img)

    def encode_text(self, txt: torch.Tensor, txt_mask: torch.Tensor) -> torch.Tensor:
        return _masked_mean(self.text(txt), txt_mask)

    def attend(
        self, regions: torch.Tensor, img_mask: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attended image vector (B, w) and the weights (B, Li) of the pooled text over the image regions."""
        logits = torch.einsum("bd,bld->bl", self.query(text), self.key(regions)) / math.sqrt(regions.shape[-1])
        weights = logits.masked_fill(~img_mask, float("-inf")).softmax(dim=-1)
        return torch.einsum("bl,bld->bd", weights, regions), weights

    def match(
        self, regions: torch.Tensor, img_mask: torch.Tensor, text: torch.Tensor, txt_mask: torch.Tensor
    ) -> torch.Tensor:
        attended, _ = self.attend(regions, img_mask, text)
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        return scale * F.cosine_similarity(attended, text, dim=-1) + self.bias


class SoftAttentionCosineHead(_EncodedTokenPairHead):
    name = "soft_attention_cosine"
    description = (
        "The pooled text attends (soft attention, softmax over image regions) to the image's region tokens; "
        "score = learnable scale × cosine(attended image, text) + bias (a logit); BCE on labelled pairs."
    )
    defaults = {"width": 64, "temperature": 0.1, **TrainOptions.defaults(batch_size=128)}

    def _setup(self, data: FusionData, train: PairSet) -> nn.Module:
        img, _, txt, _ = token_arrays(data, self.name)
        o = self.options
        return _SoftAttentionCosine(img.shape[2], txt.shape[2], o["width"], o["temperature"])

    def attention_weights(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        """(N, Li) weights of each pair's text over its image's regions; rows sum to 1 over unmasked regions."""
        self._check_fitted()
        self._check_data(data)
        ii, tt = as_pair_index(image_idx, text_idx)
        out = np.empty((len(ii), data.image_tokens.shape[1]), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(ii), SCORE_CHUNK):
                part = slice(s, s + SCORE_CHUNK)
                regions, mask, text, _ = self._encoded(data, ii[part], tt[part])
                out[part] = self.model.attend(regions, mask, text)[1].cpu().numpy()
        return out


class _AttentionFusion(_TokenModel):
    """Image and text tokens (projected, plus a modality embedding) are concatenated, mixed by ``layers``
    Transformer encoder layers, and pooled by a learned query (multi-head attention) into one product vector."""

    def __init__(
        self, d_img: int, d_txt: int, width: int, num_heads: int, layers: int, hidden: int, dropout: float
    ) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.LayerNorm(d_img), nn.Linear(d_img, width))
        self.text = nn.Sequential(nn.LayerNorm(d_txt), nn.Linear(d_txt, width))
        self.modality = nn.Parameter(0.02 * torch.randn(2, width))
        self.mixer = nn.ModuleList(
            nn.TransformerEncoderLayer(width, num_heads, 2 * width, dropout, batch_first=True, norm_first=True)
            for _ in range(layers)
        )
        self.query = nn.Parameter(0.02 * torch.randn(1, 1, width))
        self.pool = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.out = mlp(width, hidden, 1, dropout)

    def encode_image(self, img: torch.Tensor, img_mask: torch.Tensor) -> torch.Tensor:
        return self.image(img) + self.modality[0]

    def encode_text(self, txt: torch.Tensor, txt_mask: torch.Tensor) -> torch.Tensor:
        return self.text(txt) + self.modality[1]

    def fuse(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """From encoded tokens: one product vector (B, width) and the pooling weights (B, Li + Lt)."""
        tokens = torch.cat([img, txt], dim=1)
        padding = ~torch.cat([img_mask, txt_mask], dim=1)
        for layer in self.mixer:
            tokens = layer(tokens, src_key_padding_mask=padding)
        query = self.query.expand(len(tokens), -1, -1)
        pooled, weights = self.pool(query, tokens, tokens, key_padding_mask=padding)
        return pooled[:, 0], weights[:, 0]

    def match(
        self, img: torch.Tensor, img_mask: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.out(self.fuse(img, img_mask, txt, txt_mask)[0]).squeeze(-1)


class AttentionFusionHead(_EncodedTokenPairHead):
    name = "attention_fusion"
    description = (
        "Image region tokens and text tokens, projected to one width, are concatenated and fused by attention "
        "(Transformer layers, then a learned query) into one product representation → MLP → match logit; BCE."
    )
    defaults = {
        "width": 64,
        "num_heads": 4,
        "layers": 1,
        "hidden": 64,
        "dropout": 0.1,
        **TrainOptions.defaults(batch_size=128),
    }

    def _setup(self, data: FusionData, train: PairSet) -> nn.Module:
        o = self.options
        if not 0 <= int(o["layers"]) <= 4:
            raise ValueError(f"attention_fusion layers must be in [0, 4]; got {o['layers']}")
        img, _, txt, _ = token_arrays(data, self.name)
        return _AttentionFusion(
            img.shape[2], txt.shape[2], o["width"], o["num_heads"], int(o["layers"]), o["hidden"], o["dropout"]
        )

    def _fuse_output(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray, which: int,
                     width: int) -> np.ndarray:
        """Output ``which`` of ``model.fuse`` (0: fused vectors, 1: pooling weights) for the pairs, in chunks."""
        self._check_fitted()
        self._check_data(data)
        ii, tt = as_pair_index(image_idx, text_idx)
        self.model.eval()
        with torch.inference_mode():
            parts = [
                self.model.fuse(*self._encoded(data, ii[s : s + SCORE_CHUNK], tt[s : s + SCORE_CHUNK]))[which]
                .cpu().numpy()
                for s in range(0, len(ii), SCORE_CHUNK)
            ]
        return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)

    def pooling_weights(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        """(N, Li + Lt) weights of the learned pooling query over each pair's image then text tokens (head-averaged;
        padded tokens get 0)."""
        width = sum(t.shape[1] for t in (data.image_tokens, data.text_tokens) if t is not None)
        return self._fuse_output(data, image_idx, text_idx, 1, width)

    def fused(self, data: FusionData, image_idx: np.ndarray, text_idx: np.ndarray) -> np.ndarray:
        """(N, width) fused product representations of the pairs (before the match MLP)."""
        return self._fuse_output(data, image_idx, text_idx, 0, self.options["width"])
