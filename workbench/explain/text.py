"""Text-side explanations: how much each word of the text moved the score, shown by word (jieba for Chinese).

    integrated_gradients  HF text towers (hf_text, minilm, st_folder, clip_text) and the GRU/LSTM towers: captum's
                          LayerIntegratedGradients at the token-embedding layer, on a wrapper returning the PAIR score
    tfidf_terms           TF-IDF: each known term's weight and its contribution (gradient × input)
    keyword_terms         the keyword text fake: each keyword's contribution, on the words it matched
    head_attention        attention fusion's pooling weights over the text tokens
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from workbench.explain.base import (
    Explainer,
    ExplanationUnavailable,
    PairContext,
    SideExplanation,
    register_explainer,
)
from workbench.explain.words import merge_to_words, word_spans
from workbench.models.encoders import KeywordTextEncoder, TfidfEncoder
from workbench.models.fusion import AttentionFusionHead
from workbench.models.hf import CLIPTextEncoder, HFTextEncoder
from workbench.models.towers import GRUTextEncoder, LSTMTextEncoder

INTEGRATED_GRADIENTS = ("Sundararajan, Taly & Yan 2017, Axiomatic Attribution for Deep Networks (ICML); captum "
                        "LayerIntegratedGradients at the token embeddings, baseline = padding tokens")
OCCLUSION = ("leave-one-out occlusion (Zeiler & Fergus 2014): a term's contribution is the score minus the score "
             "of the text without it")
IG_STEPS = 32


def _forward_for(context: PairContext, keys: list[str]) -> Callable[..., torch.Tensor]:
    """The pair score as a function of the text encoder's input tensors (ids first), image side fixed."""
    encoder = context.models.text_encoder

    def forward(ids: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(keys, (ids, *rest), strict=True))
        batch = inputs if isinstance(encoder, HFTextEncoder | CLIPTextEncoder) else tuple(inputs.values())
        vector, tokens, mask = encoder.forward_grad(batch, context.device)
        return context.score_tensors(text_vecs=vector, text_tokens=tokens, text_mask=mask)

    return forward


def integrated_gradients(context: PairContext) -> SideExplanation:
    """Integrated gradients of the pair score at the token embeddings (padding baseline; special tokens kept),
    summed over the embedding dimension, then merged into words."""
    from captum.attr import LayerIntegratedGradients

    encoder = context.models.text_encoder
    batch = encoder.preprocess([context.text])
    if isinstance(batch, dict):
        keys = ["input_ids", *[k for k in batch if k != "input_ids"]]
        tensors = [batch[k].to(context.device) for k in keys]
    else:
        keys = ["ids", "lengths"]
        tensors = [t.to(context.device) for t in batch]
    offsets = encoder.token_offsets(context.text)
    ids = tensors[0]
    if len(offsets) != ids.shape[1]:
        raise ExplanationUnavailable(f"{len(offsets)} token spans for {ids.shape[1]} tokens")
    special = torch.tensor([span is None for span in offsets], device=ids.device)
    baseline = torch.where(special[None], ids, torch.full_like(ids, encoder.pad_token_id))
    # cuDNN's RNN backward needs training mode; the plain kernels do not
    flags = torch.backends.cudnn.flags(enabled=False) if context.device.type == "cuda" else nullcontext()
    with torch.enable_grad(), flags:
        attribution, delta = LayerIntegratedGradients(_forward_for(context, keys), encoder.word_embeddings()).attribute(
            ids, baselines=baseline, additional_forward_args=tuple(tensors[1:]), n_steps=IG_STEPS,
            internal_batch_size=IG_STEPS, return_convergence_delta=True)
    per_token = attribution.sum(-1)[0].detach().cpu().numpy().astype(np.float64)
    tokens, spans = merge_to_words(context.text, offsets, per_token)
    return SideExplanation("integrated_gradients", INTEGRATED_GRADIENTS, tokens=tokens, spans=spans,
                           details={"steps": IG_STEPS, "convergence_delta": round(float(delta.abs().max()), 6)})


def tfidf_terms(context: PairContext) -> SideExplanation:
    """Each known term's TF-IDF weight and its contribution to the score (the score minus the score of the text
    without that term, through the SVD projection, the normalisation and the head); word terms land on their words,
    character n-grams are split over the words that contain them."""
    encoder: TfidfEncoder = context.models.text_encoder
    terms, weights, projection = encoder.term_weights(context.text)
    spans = word_spans(context.text)
    if not terms:
        return SideExplanation("tfidf_terms", OCCLUSION, tokens=[(context.text[s:e], 0.0) for s, e in spans],
                               spans=spans, details={"terms": [], "note": "no term of the text is in the vocabulary"})
    kept = np.ones((len(terms) + 1, len(terms)))
    kept[np.arange(1, len(terms) + 1), np.arange(len(terms))] = 0.0  # row 0: all terms; row k: without term k-1
    vectors = np.zeros((len(kept), encoder.dim))
    vectors[:, : projection.shape[1]] = (kept * weights) @ projection
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = context.score_vectors("text", vectors).astype(np.float64)
    contribution = scores[0] - scores[1:]
    lowered = [context.text[s:e].lower() for s, e in spans]
    values = np.zeros(len(spans))
    for term, value in zip(terms, contribution, strict=True):
        hits = [i for i, word in enumerate(lowered) if word == term] or [
            i for i, word in enumerate(lowered) if term.strip() and term.strip() in word]
        for i in hits:
            values[i] += value / len(hits)
    order = np.argsort(-np.abs(contribution), kind="stable")
    details = {"terms": [[terms[i], round(float(weights[i]), 6), round(float(contribution[i]), 6)] for i in order]}
    return SideExplanation("tfidf_terms", OCCLUSION,
                           tokens=[(context.text[s:e], float(v)) for (s, e), v in zip(spans, values, strict=True)],
                           spans=spans, details=details)


def keyword_terms(context: PairContext) -> SideExplanation:
    """Each keyword's contribution (leave-one-out: the score minus the score without it) on the words it matched."""
    encoder: KeywordTextEncoder = context.models.text_encoder
    contribution = context.leave_one_out("text", encoder.encode([context.text])[0])
    units, values, keywords = [], [], {}
    for keyword, matches, value in zip(encoder.keywords, encoder.keyword_spans(context.text), contribution,
                                       strict=True):
        for span in matches:
            units.append(span)
            values.append(float(value) / len(matches))
        if matches:
            keywords[keyword] = round(float(value), 6)
    tokens, spans = merge_to_words(context.text, units, values)
    return SideExplanation("keyword_terms", OCCLUSION, tokens=tokens, spans=spans,
                           details={"keywords": keywords})


def head_attention_text(context: PairContext) -> SideExplanation:
    """Attention fusion's learned pooling query: its weights over the text tokens, merged into words."""
    head, data = context.models.head, context.data
    weights = head.pooling_weights(data, np.array([0]), np.array([0]))[0][data.image_tokens.shape[1]:]
    if data.text_mask is not None:
        weights = weights[data.text_mask[0]]
    offsets = context.models.text_encoder.token_offsets(context.text)
    if len(offsets) != len(weights):
        raise ExplanationUnavailable(f"{len(offsets)} token spans for {len(weights)} text tokens")
    tokens, spans = merge_to_words(context.text, offsets, weights)
    return SideExplanation(f"head_attention:{head.name}", "the fusion head's own attention weights", tokens=tokens,
                           spans=spans, details={"head": head.name})


for _explainer in (
    Explainer("integrated_gradients", "text", (HFTextEncoder, CLIPTextEncoder, GRUTextEncoder, LSTMTextEncoder),
              "encoder", "Integrated gradients of the pair score at the token embeddings, merged into words.",
              INTEGRATED_GRADIENTS, integrated_gradients),
    Explainer("tfidf_terms", "text", (TfidfEncoder,), "encoder",
              "TF-IDF terms with their weights and contributions to the score.", OCCLUSION, tfidf_terms),
    Explainer("keyword_terms", "text", (KeywordTextEncoder,), "encoder",
              "Matched keywords with their contributions to the score.", OCCLUSION, keyword_terms),
    Explainer("head_attention_text", "text", (AttentionFusionHead,), "head",
              "Attention fusion's pooling weights over the text tokens.", "the fusion head's own attention weights",
              head_attention_text),
):
    register_explainer(_explainer)
