"""Image-side explanations: where in the photo the evidence for the score lies, as a grid over the photo.

    integrated_grad_cam  CNN towers (small_cnn, vgg_cnn, small_resnet): Grad-CAM weights integrated along a path
                         from the photo filled with its mean colour (Sattarzadeh et al. 2021)
    grad_cam             CNN towers and CNN backbones of hf_vision: classic Grad-CAM (Selvaraju et al. 2017)
    attention_relevancy  ViT / CLIP / SigLIP towers: gradient-weighted attention relevancy (Chefer et al. 2021)
    color_histogram_map  the colour-histogram encoder: which colour bins (and pixels holding them) drive the score
    keyword_color_map    the keyword image fake: pixels of the colour names that drive the score
    head_attention       the attention weights of token heads over the image regions

The gradient methods differentiate the head's score (`FusionHead.score_tensors`) with the text side fixed.
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.explain.base import (
    FULL_BOX,
    Explainer,
    ExplanationUnavailable,
    PairContext,
    SideExplanation,
    block_sum,
    cell_grid,
    mean_fill,
    register_explainer,
)
from workbench.models.encoders import COLOR_CENTROIDS, ColorHistogramEncoder, KeywordImageEncoder
from workbench.models.fusion import AttentionFusionHead, CrossAttentionHead, SoftAttentionCosineHead
from workbench.models.hf import CLIPImageEncoder, HFVisionEncoder
from workbench.models.towers import SmallCNNEncoder, SmallResNetEncoder, VGGCNNEncoder

GRAD_CAM = ("Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
            "Localization (ICCV)")
INTEGRATED_GRAD_CAM = ("Sattarzadeh et al. 2021, Integrated Grad-CAM: Sensitivity-Aware Visual Explanation of Deep "
                       "Convolutional Networks via Integrated Gradient-Based Scoring (ICASSP); baseline: the photo "
                       "filled with its mean colour")
PATH_STEPS = 16
CHEFER = ("Chefer, Gur & Wolf 2021, Generic Attention-model Explainability for Interpreting Bi-Modal and "
          "Encoder-Decoder Transformers (ICCV), rule 6: R += mean_heads((∇A ⊙ A)+) · R")
OCCLUSION = ("leave-one-out occlusion of the encoder's features (Zeiler & Fergus 2014): a feature's contribution is "
             "the score minus the score without it, spread over the pixels that hold it")
PIXEL_GRID = 8  # cells per side of the weight-free encoders' maps


def _image_batch(context: PairContext):
    return context.models.image_encoder.preprocess([context.image])


def _box(context: PairContext) -> tuple[float, float, float, float]:
    view_box = getattr(context.models.image_encoder, "view_box", None)
    return FULL_BOX if view_box is None else view_box(context.image.size)


def grad_cam(context: PairContext) -> SideExplanation:
    """Grad-CAM on the last feature map: cells weighted by the spatial mean of the score's gradient, ReLU."""
    encoder = context.models.image_encoder
    with torch.enable_grad():
        if isinstance(encoder, HFVisionEncoder):
            vector, tokens, mask, attentions = encoder.forward_with_attentions(_image_batch(context), context.device)
            if attentions:
                raise ExplanationUnavailable("a transformer backbone (use attention_relevancy)")
            cells = tokens
        else:
            cells, vector, tokens, mask = encoder.forward_regions(_image_batch(context), context.device)
        score = context.score_tensors(image_vecs=vector, image_tokens=tokens, image_mask=mask)
        (grads,) = torch.autograd.grad(score.sum(), cells)
    weights = grads.mean(dim=1, keepdim=True)
    cam = torch.relu((cells * weights).sum(-1))[0].detach().cpu().numpy()
    return SideExplanation("grad_cam", GRAD_CAM, relevance=cell_grid(cam), box=_box(context),
                           details={"cells": int(cam.size)})


def integrated_grad_cam(context: PairContext) -> SideExplanation:
    """Grad-CAM's channel weights averaged along the straight path from the baseline's feature map (the photo
    filled with its mean colour, as the deletion test fills) to the photo's, applied to the difference of the two
    maps. Signed, and the cells sum to about the score minus the baseline's score; where plain Grad-CAM reads the
    gradient at the photo only, which saturates for a confident match."""
    encoder = context.models.image_encoder
    with torch.no_grad():
        cells = encoder.forward_regions(_image_batch(context), context.device)[0]
        base = encoder.forward_regions(encoder.preprocess([mean_fill(context.image)]), context.device)[0]
    alphas = ((torch.arange(PATH_STEPS, dtype=cells.dtype, device=cells.device) + 0.5) / PATH_STEPS)[:, None, None]
    with torch.enable_grad():
        path = (base + alphas * (cells - base)).requires_grad_(True)
        score = context.score_tensors(**dict(zip(("image_vecs", "image_tokens", "image_mask"),
                                                  encoder.tokens_from_cells(path), strict=True)))
        (grads,) = torch.autograd.grad(score.sum(), path)
    weights = grads.mean(dim=(0, 1))
    cam = ((cells - base)[0] * weights).sum(-1).detach().cpu().numpy()
    return SideExplanation("integrated_grad_cam", INTEGRATED_GRAD_CAM, relevance=cell_grid(cam), box=_box(context),
                           details={"cells": int(cam.size), "steps": PATH_STEPS})


def attention_relevancy(context: PairContext) -> SideExplanation:
    """Chefer et al. 2021: relevance R = I, then per layer R += mean over heads of (∇A ⊙ A)⁺ · R; a patch's
    relevance is the pooled token's row of R (the class token's, or the mean row where all tokens are pooled)."""
    encoder = context.models.image_encoder
    with torch.enable_grad():
        vector, tokens, mask, attentions = encoder.forward_with_attentions(_image_batch(context), context.device)
        if not attentions:
            raise ExplanationUnavailable("the vision model returns no attention maps (a CNN backbone: use grad_cam)")
        score = context.score_tensors(image_vecs=vector, image_tokens=tokens, image_mask=mask)
        grads = torch.autograd.grad(score.sum(), attentions, allow_unused=True)
    n = attentions[0].shape[-1]
    relevance = torch.eye(n, dtype=torch.float64)
    for attention, grad in zip(attentions, grads, strict=True):
        if grad is None:  # a layer the score does not depend on adds nothing
            continue
        cam = (grad * attention).clamp(min=0).mean(dim=1)[0].detach().cpu().double()
        relevance = relevance + cam @ relevance
    has_cls = int(round(np.sqrt(n - 1))) ** 2 == n - 1
    pools_cls = isinstance(encoder, CLIPImageEncoder) or getattr(encoder, "pooling", "mean") in ("cls", "pooler")
    if has_cls and pools_cls and not context.models.head.uses_tokens:
        row = relevance[0].numpy()
    else:
        row = relevance.mean(0).numpy()
    return SideExplanation("attention_relevancy", CHEFER, relevance=cell_grid(row), box=_box(context),
                           details={"layers": len(attentions), "tokens": n})


def color_histogram_map(context: PairContext) -> SideExplanation:
    """Each colour bin's and gradient bin's contribution (leave-one-out: the score minus the score without that
    bin) spread over the pixels holding it; the grid sums to the sum of the contributions."""
    encoder: ColorHistogramEncoder = context.models.image_encoder
    contribution = context.leave_one_out("image", encoder.encode([context.image])[0])
    color_bin, hog_bin, magnitude = encoder.pixel_bins(context.image)
    n_colors = int(np.prod(encoder.hsv_bins))
    counts = np.bincount(color_bin.ravel(), minlength=n_colors)
    pixels = contribution[color_bin] / counts[color_bin]
    mass = np.bincount(hog_bin.ravel(), weights=magnitude.ravel(), minlength=len(contribution) - n_colors)
    share = np.divide(magnitude, mass[hog_bin], out=np.zeros_like(magnitude), where=mass[hog_bin] > 0)
    pixels = pixels + contribution[n_colors + hog_bin] * share
    present = np.flatnonzero(counts)
    top = present[np.argsort(-np.abs(contribution[present]), kind="stable")][:8]
    bins = [{"bin": int(b), "rgb": list(encoder.bin_color(b)), "share": round(float(counts[b] / counts.sum()), 4),
             "contribution": round(float(contribution[b]), 6)} for b in top]
    details = {"color_bins": bins, "color_total": round(float(contribution[:n_colors].sum()), 6),
               "gradient_total": round(float(contribution[n_colors:].sum()), 6)}
    return SideExplanation("color_histogram_map", OCCLUSION, relevance=block_sum(pixels, PIXEL_GRID),
                           details=details)


def keyword_color_map(context: PairContext) -> SideExplanation:
    """Each colour name's contribution (leave-one-out) spread over the pixels whose nearest colour it is."""
    encoder: KeywordImageEncoder = context.models.image_encoder
    contribution = context.leave_one_out("image", encoder.encode([context.image])[0])
    nearest = encoder.pixel_colors(context.image)
    pixels = np.zeros(nearest.shape, dtype=np.float64)
    names = list(COLOR_CENTROIDS)
    colors = {}
    for color in np.unique(nearest):
        feature = encoder.feature_of_color(int(color))
        if feature is not None and contribution[feature]:
            where = nearest == color
            pixels[where] = contribution[feature] / where.sum()
            colors[names[color]] = round(float(contribution[feature]), 6)
    return SideExplanation("keyword_color_map", OCCLUSION, relevance=block_sum(pixels, PIXEL_GRID),
                           details={"colors": colors})


def head_attention_image(context: PairContext) -> SideExplanation:
    """The token head's attention over the image regions: soft attention's weights, cross-attention's weights
    averaged over the text tokens, or attention fusion's pooling weights (image part)."""
    head, data, pair = context.models.head, context.data, (np.array([0]), np.array([0]))
    if isinstance(head, SoftAttentionCosineHead):
        weights = head.attention_weights(data, *pair)[0]
    elif isinstance(head, CrossAttentionHead):
        per_token = head.attention_weights(data, *pair)[0]
        real = data.text_mask[0] if data.text_mask is not None else np.ones(len(per_token), bool)
        weights = per_token[real].mean(0)
    else:
        weights = head.pooling_weights(data, *pair)[0][: data.image_tokens.shape[1]]
    if data.image_mask is not None:
        weights = weights[data.image_mask[0]]
    return SideExplanation(f"head_attention:{head.name}", "the fusion head's own attention weights",
                           relevance=cell_grid(weights), box=_box(context), details={"head": head.name})


for _explainer in (
    Explainer("attention_relevancy", "image", (HFVisionEncoder, CLIPImageEncoder), "encoder",
              "Gradient-weighted attention relevancy over the patches of a ViT/CLIP/SigLIP tower.", CHEFER,
              attention_relevancy),
    Explainer("integrated_grad_cam", "image", (SmallCNNEncoder, VGGCNNEncoder, SmallResNetEncoder), "encoder",
              "Grad-CAM integrated along a path from the mean-colour photo, over the last feature map of a CNN tower.",
              INTEGRATED_GRAD_CAM, integrated_grad_cam),
    Explainer("grad_cam", "image", (SmallCNNEncoder, VGGCNNEncoder, SmallResNetEncoder, HFVisionEncoder), "encoder",
              "Grad-CAM over the last feature map of a CNN tower.", GRAD_CAM, grad_cam),
    Explainer("color_histogram_map", "image", (ColorHistogramEncoder,), "encoder",
              "Colour and gradient bins driving the score, placed where they occur in the photo.", OCCLUSION,
              color_histogram_map),
    Explainer("keyword_color_map", "image", (KeywordImageEncoder,), "encoder",
              "Colour names driving the score, placed where they occur in the photo.", OCCLUSION,
              keyword_color_map),
    Explainer("head_attention", "image", (SoftAttentionCosineHead, CrossAttentionHead, AttentionFusionHead), "head",
              "The token head's attention weights over the image regions.", "the fusion head's own attention weights",
              head_attention_image),
):
    register_explainer(_explainer)
