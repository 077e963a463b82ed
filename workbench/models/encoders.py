"""Encoders computed with numpy/scikit-learn: keyword fakes, TF-IDF + SVD, colour and gradient histograms."""

from __future__ import annotations

import hashlib
import logging
import re
from abc import abstractmethod
from typing import Any

import numpy as np
import torch
from PIL import Image

from workbench.models.base import Encoder, ProgressFn, register_encoder

COLOR_CENTROIDS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "orange": (240, 140, 20),
    "yellow": (235, 220, 40),
    "green": (40, 160, 60),
    "blue": (30, 70, 200),
    "purple": (130, 50, 160),
    "pink": (240, 150, 190),
    "brown": (120, 75, 40),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
    "gray": (128, 128, 128),
}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"\w+")


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens; texts containing CJK characters are segmented with jieba."""
    text = text.lower()
    if not has_cjk(text):
        return _WORD.findall(text)
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [token for token in jieba.lcut(text) if _WORD.search(token)]


class NumpyEncoder(Encoder):
    """An encoder whose features are computed on the CPU in ``preprocess``; ``forward`` only moves them."""

    def preprocess(self, items: list) -> np.ndarray:
        return self._features(items).astype(np.float32, copy=False)

    @abstractmethod
    def _features(self, items: list) -> np.ndarray:
        """(N, dim) features."""

    def forward(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(batch)).to(device)


@register_encoder
class KeywordTextEncoder(NumpyEncoder):
    """Multi-hot over a fixed keyword list: a deterministic fake for hand-checkable tests."""

    name = "keyword_text"
    modality = "text"
    description = "Multi-hot presence of fixed keywords (deterministic test fake)."
    defaults = {"keywords": list(COLOR_CENTROIDS)}
    keywords: list[str]

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if isinstance(self.keywords, str) or not self.keywords:
            raise ValueError(f"keywords must be a non-empty list of strings, got {self.keywords!r}")
        self.keywords = [k.lower() for k in self.keywords]
        self.dim = len(self.keywords)
        # CJK keywords match as substrings (no word boundaries in Chinese), others as whole words.
        self._patterns = [
            re.compile(re.escape(k) if has_cjk(k) else rf"(?<!\w){re.escape(k)}(?!\w)") for k in self.keywords
        ]

    def _features(self, items: list[str]) -> np.ndarray:
        return np.array(
            [[p.search(text.lower()) is not None for p in self._patterns] for text in items], dtype=np.float32
        ).reshape(len(items), self.dim)

    def keyword_spans(self, text: str) -> list[list[tuple[int, int]]]:
        """For each keyword (feature), the character spans where it occurs in ``text`` (lowercased)."""
        lowered = text.lower()
        return [[m.span() for m in p.finditer(lowered)] for p in self._patterns]


@register_encoder
class KeywordImageEncoder(NumpyEncoder):
    """Multi-hot over colour names: each pixel takes its nearest colour centroid; colours covering at least
    ``min_share`` of the pixels (and always the most frequent one) are set."""

    name = "keyword_image"
    modality = "image"
    description = "Multi-hot dominant colour names from RGB centroids (deterministic test fake)."
    defaults = {"colors": list(COLOR_CENTROIDS), "min_share": 0.25}
    colors: list[str]
    min_share: float

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        unknown = [c for c in self.colors if c not in COLOR_CENTROIDS]
        if unknown or not self.colors:
            raise ValueError(f"Unknown colour(s) {unknown or self.colors!r}; allowed: {list(COLOR_CENTROIDS)}")
        if not 0.0 < self.min_share <= 1.0:
            raise ValueError(f"min_share must be in (0, 1], got {self.min_share}")
        self.colors = list(self.colors)
        self.min_share = float(self.min_share)
        self.dim = len(self.colors)
        self._centroids = np.array(list(COLOR_CENTROIDS.values()), dtype=np.float32)
        self._columns = [list(COLOR_CENTROIDS).index(c) for c in self.colors]

    def _features(self, items: list[Image.Image]) -> np.ndarray:
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for row, image in enumerate(items):
            nearest = self.pixel_colors(image).ravel()
            share = np.bincount(nearest, minlength=len(self._centroids)) / nearest.size
            chosen = share >= self.min_share
            chosen[share.argmax()] = True
            out[row] = chosen[self._columns]
        return out

    def pixel_colors(self, image: Image.Image) -> np.ndarray:
        """(32, 32) index into ``COLOR_CENTROIDS`` of each cell's nearest colour (the image resized to 32×32)."""
        pixels = np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
        return ((pixels[:, :, None, :] - self._centroids[None, None]) ** 2).sum(-1).argmin(-1)

    def feature_of_color(self, color_index: int) -> int | None:
        """The feature (column) of a ``COLOR_CENTROIDS`` index, or None when this encoder does not use it."""
        return self._columns.index(color_index) if color_index in self._columns else None


@register_encoder
class TfidfEncoder(NumpyEncoder):
    """TF-IDF over words (jieba-segmented for Chinese) and optionally char n-grams, reduced by a seeded
    TruncatedSVD to ``dim`` dense dimensions and L2-normalised. Texts with no known term encode to zeros."""

    name = "tfidf"
    modality = "text"
    description = "TF-IDF (jieba for Chinese) + TruncatedSVD, fitted on the train texts."
    defaults = {"dim": 256, "char_ngrams": False, "min_df": 1, "max_features": 50_000}
    normalizes = True
    requires_fit = True
    char_ngrams: bool
    min_df: int
    max_features: int | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        self.dim = int(self.dim)
        self.char_ngrams = bool(self.char_ngrams)
        self.min_df = int(self.min_df)
        self._vectorizers: list[Any] = []
        self._svd: Any = None

    def fit(
        self,
        items: list[str],
        *,
        targets: dict[str, np.ndarray] | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        common = {"min_df": self.min_df, "max_features": self.max_features, "sublinear_tf": True}
        vectorizers = [TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, **common)]
        if self.char_ngrams:
            vectorizers.append(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3), **common))
        matrix = _hstack([v.fit_transform(items) for v in vectorizers])
        n_components = min(self.dim, matrix.shape[1] - 1, matrix.shape[0])
        if n_components < 1:
            raise ValueError(f"tfidf needs at least 2 distinct terms to fit; got {matrix.shape[1]}")
        self._svd = TruncatedSVD(n_components=n_components, random_state=seed).fit(matrix)
        self._vectorizers = vectorizers
        if progress:
            progress(1.0, f"tfidf: {matrix.shape[1]} terms -> {n_components} SVD components")

    def _features(self, items: list[str]) -> np.ndarray:
        self._require_fitted(self._svd is not None)
        reduced = self._svd.transform(_hstack([v.transform(items) for v in self._vectorizers]))
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        out[:, : reduced.shape[1]] = reduced  # zero-padded when the vocabulary is smaller than dim
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    def term_weights(self, text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The text's known terms, their TF-IDF weights (n,) and their rows of the SVD projection (n, k): the
        encoder's vector is ``weights @ projection``, zero-padded to ``dim`` and L2-normalised."""
        self._require_fitted(self._svd is not None)
        terms, weights, columns, offset = [], [], [], 0
        for vectorizer in self._vectorizers:
            row = vectorizer.transform([text]).tocoo()
            names = vectorizer.get_feature_names_out()
            terms += [str(names[c]) for c in row.col]
            weights += row.data.tolist()
            columns += (row.col + offset).tolist()
            offset += len(names)
        projection = self._svd.components_[:, columns].T if columns else np.zeros((0, self._svd.n_components))
        return terms, np.asarray(weights, dtype=np.float64), np.asarray(projection, dtype=np.float64)

    def _state_fingerprint(self) -> str:
        if self._svd is None:
            return "unfitted"
        h = hashlib.sha256()
        for vectorizer in self._vectorizers:
            h.update(repr(sorted(vectorizer.vocabulary_.items())).encode())
            h.update(vectorizer.idf_.tobytes())
        h.update(np.ascontiguousarray(self._svd.components_).tobytes())
        return h.hexdigest()


def _hstack(matrices: list[Any]) -> Any:
    from scipy import sparse

    return matrices[0] if len(matrices) == 1 else sparse.hstack(matrices, format="csr")


@register_encoder
class ColorHistogramEncoder(NumpyEncoder):
    """Joint HSV colour histogram (L1) plus a HOG-style gradient-orientation histogram over a grid of a 64x64
    grayscale resize (L2), concatenated and L2-normalised."""

    name = "color_histogram"
    modality = "image"
    description = "HSV joint histogram + grid gradient-orientation histogram (numpy only)."
    defaults = {"hsv_bins": [8, 4, 4], "orientation_bins": 8, "grid": 4}
    normalizes = True
    hsv_bins: tuple[int, int, int]
    orientation_bins: int
    grid: int

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if len(self.hsv_bins) != 3 or min(self.hsv_bins) < 1:
            raise ValueError(f"hsv_bins must be three positive ints, got {self.hsv_bins!r}")
        if self.grid < 1 or 64 % self.grid or self.orientation_bins < 1:
            raise ValueError(
                f"grid must divide 64 and orientation_bins be >= 1; got {self.grid}, {self.orientation_bins}"
            )
        self.hsv_bins = tuple(int(b) for b in self.hsv_bins)
        self.orientation_bins = int(self.orientation_bins)
        self.grid = int(self.grid)
        self.dim = int(np.prod(self.hsv_bins)) + self.grid * self.grid * self.orientation_bins

    def _features(self, items: list[Image.Image]) -> np.ndarray:
        return np.stack([self._one(image) for image in items]) if items else np.zeros((0, self.dim))

    def _one(self, image: Image.Image) -> np.ndarray:
        color_bin, hog_bin, magnitude = self.pixel_bins(image)
        hb, sb, vb = self.hsv_bins
        color = np.bincount(color_bin.ravel(), minlength=hb * sb * vb).astype(np.float64)
        color /= color.sum()
        nb = self.orientation_bins
        hog = np.bincount(hog_bin.ravel(), weights=magnitude.ravel(), minlength=self.grid**2 * nb)
        hog /= max(np.linalg.norm(hog), 1e-12)

        out = np.concatenate([color, hog])
        return out / np.linalg.norm(out)

    def pixel_bins(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each pixel of the 64×64 resize: its joint HSV bin, its (grid cell, orientation) gradient bin and its
        gradient magnitude, all (64, 64) — where in the photo each feature comes from."""
        small = image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
        hsv = np.asarray(small.convert("HSV"), dtype=np.int64)
        hb, sb, vb = self.hsv_bins
        color_bin = ((hsv[..., 0] * hb // 256) * sb + hsv[..., 1] * sb // 256) * vb + hsv[..., 2] * vb // 256

        gray = np.asarray(small.convert("L"), dtype=np.float64) / 255.0
        gx = np.zeros_like(gray)
        gy = np.zeros_like(gray)
        gx[:, 1:-1] = gray[:, 2:] - gray[:, :-2]
        gy[1:-1, :] = gray[2:, :] - gray[:-2, :]
        magnitude = np.hypot(gx, gy)
        angle = np.mod(np.arctan2(gy, gx), np.pi)
        nb = self.orientation_bins
        orient = np.minimum((angle / np.pi * nb).astype(np.int64), nb - 1)
        cell = 64 // self.grid
        rows, cols = np.indices(gray.shape) // cell
        return color_bin, (rows * self.grid + cols) * nb + orient, magnitude

    def bin_color(self, color_bin: int) -> tuple[int, int, int]:
        """The RGB colour at the centre of a joint HSV bin (for showing which colours drive a score)."""
        hb, sb, vb = self.hsv_bins
        h, rest = divmod(int(color_bin), sb * vb)
        s, v = divmod(rest, vb)
        centre = Image.new("HSV", (1, 1), (int((h + 0.5) * 256 / hb), int((s + 0.5) * 256 / sb),
                                           int((v + 0.5) * 256 / vb)))
        return tuple(int(c) for c in centre.convert("RGB").getpixel((0, 0)))
