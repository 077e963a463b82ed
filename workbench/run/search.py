"""Search an eval set's gallery with a finished run, and find an item's nearest neighbours in its joint space.

A query is a typed text (English or Chinese), a photo, or an eval-set item (then the true product's rank is
reported). Heads with a joint space retrieve by exact top-k of cosine similarity over the run's gallery embeddings,
held as one checked block (a query costs about one matrix–vector product; ``benchmarks/bench_search``), or through a
FAISS index when one is asked for (``workbench.scale.search``). Pair heads have no joint space: they re-rank the top
``depth`` candidates of a stated retriever (BM25 over titles, a CCA view of the run's own encoder outputs, or
another run's joint space), and every result says which.

Query encoding needs the run's models, so :class:`RunSearcher` wraps a restored :class:`RunModels` (build it once
per run and reuse it: restoring refits the encoders and retrains the head).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy import sparse

from workbench import store
from workbench.data.evalsets import load_eval_set
from workbench.data.model import EvalSetData
from workbench.data.vocab import detect_language
from workbench.metrics._validation import check_choice, check_matrix, check_positive_int
from workbench.models.encoders import tokenize
from workbench.models.fusion import FusionData, FusionHead, create_fusion_head
from workbench.run.artifacts import _gallery
from workbench.run.fitting import pair_sets
from workbench.run.restore import NewImage, NewText, RunModels, restore_run_models
from workbench.run.runner import get_run
from workbench.scale.search import ANN_INDEXES, build_faiss_index, search_faiss_index

GALLERIES: dict[str, str] = {"test": "test split", "all": "all items"}
RETRIEVERS: tuple[str, ...] = ("auto", "lexical", "cca")  # or a RunSearcher of another run with a joint space
INDEXES: tuple[str, ...] = ("exact", *ANN_INDEXES)
RERANK_DEPTH = 100  # candidates a pair head re-ranks
QUERY_IMAGE_SIDE = 1024  # an uploaded photo is reduced to this long side before the encoder's own resize
BM25_K1, BM25_B = 1.2, 0.75
HIT_COLUMNS = ["rank", "item_id", "modality", "product_id", "score", "text", "image_path"]

Embed = Callable[[FusionData], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SearchResult:
    """One run's answer to one query: the ranked hits and how they were found.

    ``hits`` columns are :data:`HIT_COLUMNS` (``text`` for text hits, ``image_path`` for image hits; ``rank`` runs
    per modality). ``retriever`` is None for joint-space retrieval, else what a pair head re-ranked.
    ``true_rank`` (pessimistic ties: gallery items scoring equal to the true product rank above it) is set for
    eval-set item queries; ``note`` says why it is missing when it cannot be given.
    """

    run_id: str
    query: str
    hits: pd.DataFrame
    method: str
    gallery: str
    latency_ms: dict[str, float]
    retriever: str | None = None
    true_product: str | None = None
    true_rank: int | None = None
    note: str | None = None
    words: tuple[str, ...] = ()
    similar: bool = False

    def to_json(self) -> list[dict[str, Any]]:
        """The CLI's objects: ``rank``, ``product_id``, ``score`` and ``text`` or ``image_path`` (plus ``modality``
        for similar items and ``reranked_from`` when a pair head re-ranked a retriever's candidates)."""
        out = []
        for row in self.hits.to_dict("records"):
            item: dict[str, Any] = {"rank": int(row["rank"]), "product_id": row["product_id"],
                                    "score": float(row["score"])}
            if row["modality"] == "text":
                item["text"] = row["text"]
            else:
                item["image_path"] = row["image_path"]
            if self.similar:
                item["modality"] = row["modality"]
            if self.retriever is not None:
                item["reranked_from"] = self.retriever
            out.append(item)
        return out


# ------------------------------------------------------------------------------------------------- galleries
def gallery_rows(data: EvalSetData, gallery: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Image rows, text rows (of ``data.images`` / ``data.texts``) and a description of one gallery.

    ``test``: the run's own retrieval gallery (test-split images and texts that belong to a product); ``all``:
    every image and every text that belongs to a product (attribute-swap texts belong to none).
    """
    check_choice("gallery", gallery, GALLERIES)
    if gallery == "test":
        return _gallery(data)
    image_idx = np.arange(len(data.images))
    text_idx = np.flatnonzero(data.texts["product_id"].notna().to_numpy())
    return image_idx, text_idx, f"all items: {len(image_idx)} images × {len(text_idx)} texts"


def gallery_items(eval_set: str, gallery: str = "test", *, db: str | os.PathLike[str] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The gallery's images (image_id, product_id, path) and texts (text_id, product_id, text, language), read
    without any model: the eval-set items a query can be picked from."""
    with store.connect(db) as con:
        data = load_eval_set(con, eval_set)
    image_idx, text_idx, _ = gallery_rows(data, gallery)
    images = data.images.iloc[image_idx][["image_id", "product_id", "path"]].reset_index(drop=True)
    texts = data.texts.iloc[text_idx][["text_id", "product_id", "text", "language"]].reset_index(drop=True)
    return images, texts


def decode_query_image(data: bytes) -> Image.Image:
    """An uploaded photo as RGB, long side at most :data:`QUERY_IMAGE_SIDE` (JPEGs decoded at reduced size)."""
    try:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (QUERY_IMAGE_SIDE, QUERY_IMAGE_SIDE))
        image = image.convert("RGB")
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        raise ValueError(f"The query image cannot be read ({exc}); upload a JPEG, PNG or WebP photo.") from exc
    image.thumbnail((QUERY_IMAGE_SIDE, QUERY_IMAGE_SIDE))
    return image


# ------------------------------------------------------------------------------------------------ retrieval
class _Space:
    """A joint space over one gallery: L2-normalised vectors of every eval-set item, contiguous gallery blocks
    (checked once here), and the projection of new content. Top-k is exact (one matrix–vector product and a
    partial sort) or through a FAISS index built once here."""

    def __init__(self, embed: Embed, data: FusionData, image_rows: np.ndarray, text_rows: np.ndarray,
                 description: str, index: str) -> None:
        self.embed, self.description, self.index = embed, description, index
        self.images, self.texts = (np.ascontiguousarray(v, dtype=np.float32) for v in embed(data))
        self.rows = {"image": image_rows, "text": text_rows}
        self.blocks = {m: np.ascontiguousarray(check_matrix(vectors[rows], f"{m} embeddings"), dtype=np.float32)
                       for m, vectors, rows in (("image", self.images, image_rows), ("text", self.texts, text_rows))}
        self.faiss = ({m: build_faiss_index(b, index=index) for m, b in self.blocks.items() if len(b)}
                      if index != "exact" else {})

    def vector(self, modality: str, row: int) -> np.ndarray:
        return (self.images if modality == "image" else self.texts)[row]

    def scores(self, query: np.ndarray, modality: str) -> np.ndarray:
        """Cosine of ``query`` (d,) with every gallery item of ``modality`` (gallery order)."""
        return self.blocks[modality] @ query

    def topk(self, query: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and eval-set rows of the ``k`` gallery items of ``modality`` nearest to ``query`` (d,), best
        first (equal scores in gallery order)."""
        if not len(self.blocks[modality]):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if self.index != "exact":
            scores, idx = search_faiss_index(self.faiss[modality], query[None], k=k)
            keep = idx[0] >= 0
            return scores[0][keep], self.rows[modality][idx[0][keep]]
        # One query: a product with the held gallery and a partial sort cost about one matrix–vector product;
        # exact_topk (built for query batches) re-checks and re-chunks the gallery per call, ~3.8x that at 100k.
        scores = self.scores(query, modality)
        best = _top(scores, k)
        return scores[best], self.rows[modality][best]

    @property
    def how(self) -> str:
        return "exact top-k" if self.index == "exact" else f"FAISS {self.index.upper()} (approximate) top-k"


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first, equal scores by position."""
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


class _Bm25:
    """Okapi BM25 over the titles of each gallery image's product (words from the tokenizer TF-IDF uses: jieba
    for Chinese). A document-term matrix of BM25 weights, so a query's scores are a sum of its terms' columns."""

    description = "BM25 over the titles of each gallery image's product (jieba words for Chinese)"

    def __init__(self, data: EvalSetData, image_rows: np.ndarray) -> None:
        titles = data.texts.dropna(subset=["product_id"]).groupby("product_id")["text"].agg(" ".join)
        products = data.images["product_id"].iloc[image_rows]
        docs = [tokenize(str(titles.get(p, ""))) for p in products]
        self.vocabulary: dict[str, int] = {}
        rows, cols, tf = [], [], []
        for d, words in enumerate(docs):
            counts: dict[int, int] = {}
            for w in words:
                j = self.vocabulary.setdefault(w, len(self.vocabulary))
                counts[j] = counts.get(j, 0) + 1
            rows += [d] * len(counts)
            cols += list(counts)
            tf += list(counts.values())
        n_docs, n_terms = len(docs), len(self.vocabulary)
        lengths = np.array([len(w) for w in docs], dtype=np.float64)
        tf_arr, rows_arr = np.asarray(tf, dtype=np.float64), np.asarray(rows, dtype=np.int64)
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=n_terms)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / max(lengths.mean() if n_docs else 1.0, 1e-9))
        weights = idf[cols] * tf_arr * (BM25_K1 + 1) / (tf_arr + norm[rows_arr])
        self.matrix = sparse.csc_matrix((weights, (rows_arr, cols)), shape=(n_docs, n_terms))
        self.image_rows = image_rows

    def topk(self, text: str, k: int) -> np.ndarray:
        """Eval-set image rows of the ``k`` best-scoring documents (ties: gallery order), best first."""
        terms = [self.vocabulary[w] for w in tokenize(text) if w in self.vocabulary]
        scores = np.asarray(self.matrix[:, terms].sum(axis=1)).ravel() if terms else np.zeros(self.matrix.shape[0])
        return self.image_rows[_top(scores, k)]


# ------------------------------------------------------------------------------------------------- searcher
@dataclass(eq=False)
class RunSearcher:
    """A finished run's models over one gallery, ready for queries. Treat as read-only once built (one instance
    serves every session of the app)."""

    models: RunModels
    gallery: str = "test"
    retriever: str | RunSearcher = "auto"
    depth: int = RERANK_DEPTH
    index: str = "exact"
    load_s: float = 0.0  # seconds the models took to restore (shown to say what the first query cost)
    _space: _Space = field(init=False, repr=False)
    _bm25: _Bm25 | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        check_choice("index", self.index, INDEXES)
        self.depth = check_positive_int("depth", self.depth)
        models = self.models
        self.image_rows, self.text_rows, self.gallery_description = gallery_rows(models.data, self.gallery)
        if isinstance(self.retriever, RunSearcher):
            other = self.retriever
            if not other.joint or other.models.eval_set != models.eval_set or other.gallery != self.gallery:
                raise ValueError(f"Run {other.run_id} cannot retrieve for run {self.run_id}: a retriever run needs "
                                 "a joint space, the same eval set and the same gallery.")
        else:
            check_choice("retriever", self.retriever, RETRIEVERS)
        if self.joint:
            self._space = _Space(models.head.embed, models.fusion_data, self.image_rows, self.text_rows,
                                 f"the {models.head.name} head's joint space", self.index)
            return
        view = _cca_view(models)
        self._space = _Space(view.embed, models.fusion_data, self.image_rows, self.text_rows,
                             "a CCA view of this run's encoder outputs (fitted on its train pairs)", self.index)
        self._bm25 = _Bm25(models.data, self.image_rows)

    @property
    def run_id(self) -> str:
        return self.models.run_id

    @property
    def joint(self) -> bool:
        """Whether the run's head has a joint space (else it re-ranks a retriever's candidates)."""
        return bool(self.models.head.embeds)

    # ------------------------------------------------------------------------------------------------ queries
    def search_text(self, text: str, *, k: int = 10, language: str | None = None) -> SearchResult:
        """Gallery images for a typed query; the language (for tags) is detected when not given."""
        text = str(text).strip()
        if not text:
            raise ValueError("The query is empty; type a few words (English or Chinese).")
        query = NewText(text, language or detect_language(text))
        return self._search("image", query, None, k, f"text {text!r}", words=tuple(tokenize(text)))

    def search_image(self, image: Image.Image, *, k: int = 10) -> SearchResult:
        """Gallery texts for a photo (it takes no tags, category or product: it is not in the eval set)."""
        return self._search("text", NewImage(image), None, k, "an uploaded image")

    def search_item(self, item_id: str, *, k: int = 10) -> SearchResult:
        """Gallery images for an eval-set text, or gallery texts for an eval-set image, with the true product's
        rank; the item's stored vector is the query (nothing is re-encoded)."""
        modality, row = self._locate(item_id)
        target = "image" if modality == "text" else "text"
        frame = self.models.data.texts if modality == "text" else self.models.data.images
        product = frame["product_id"].iloc[row]
        return self._search(target, item_id, (modality, row), k, f"{modality} {item_id}",
                            true_product=None if pd.isna(product) else str(product))

    def similar(self, item_id: str, *, k: int = 10) -> SearchResult:
        """The ``k`` nearest gallery images and ``k`` nearest gallery texts of an eval-set item (the item itself
        left out) by cosine in the run's joint space (a CCA view of its encoder outputs for a pair head)."""
        k = check_positive_int("k", k)
        modality, row = self._locate(item_id)
        start = time.perf_counter()
        query = self._space.vector(modality, row)
        parts = []
        for target in ("image", "text"):
            scores, rows = self._space.topk(query, target, k + 1)
            keep = ~((rows == row) & (target == modality))
            parts.append(self._hits(target, rows[keep][:k], scores[keep][:k]))
        total = (time.perf_counter() - start) * 1000
        return SearchResult(self.run_id, f"similar to {modality} {item_id}", pd.concat(parts, ignore_index=True),
                            f"cosine in {self._space.description}, {self._space.how}", self.gallery_description,
                            {"retrieve": total, "total": total}, similar=True)

    # ------------------------------------------------------------------------------------------------ internals
    def _locate(self, item_id: str) -> tuple[str, int]:
        found = []
        for modality, lookup in (("image", self.models.image_row), ("text", self.models.text_row)):
            try:
                found.append((modality, lookup(item_id)))
            except KeyError:
                continue
        if len(found) != 1:
            where = "both an image and a text" if found else "neither an image nor a text"
            raise KeyError(f"{item_id!r} is {where} of eval set {self.models.eval_set!r}; give an image_id or a "
                           "text_id (the Eval sets page and `evalset show` list them).")
        return found[0]

    def _search(self, target: str, query: Any, item: tuple[str, int] | None, k: int, label: str, *,
                true_product: str | None = None, words: tuple[str, ...] = ()) -> SearchResult:
        k = check_positive_int("k", k)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        if self.joint:
            vector = self._query_vector(query, item, target)
            timings["encode"] = (time.perf_counter() - start) * 1000
            scores, rows = self._space.topk(vector, target, k)
            timings["retrieve"] = (time.perf_counter() - start) * 1000 - timings["encode"]
            method, retriever = f"cosine in {self._space.description}, {self._space.how}", None
            ranked = None
        else:
            candidates, retriever = self._candidates(query, item, target)
            timings["retrieve"] = (time.perf_counter() - start) * 1000
            candidate_scores = self._pair_scores(query, candidates, target)
            order = _top(candidate_scores, k)
            scores, rows = candidate_scores[order], candidates[order]
            timings["rerank"] = (time.perf_counter() - start) * 1000 - timings["retrieve"]
            method = f"{self.models.head.name} pair scorer re-ranking the top {self.depth} of {retriever}"
            ranked = (candidates, candidate_scores, retriever)
        timings["total"] = (time.perf_counter() - start) * 1000
        true_rank, note = (None, None) if item is None else self._true_rank(item, target, true_product, ranked)
        return SearchResult(self.run_id, label, self._hits(target, rows, scores), method, self.gallery_description,
                            timings, retriever, true_product, true_rank, note, words)

    def _query_vector(self, query: Any, item: tuple[str, int] | None, target: str) -> np.ndarray:
        """The query in the joint space (a pair head's CCA view): an eval-set item's stored vector, or new content
        encoded by the run's encoders and projected."""
        space = self._space
        if item is not None:
            return space.vector(*item)
        side = "text" if target == "image" else "image"
        fd = self.models.fusion_data_for([query] if side == "image" else [], [query] if side == "text" else [])
        images, texts = space.embed(fd)
        return np.asarray((texts if side == "text" else images)[0], dtype=np.float32)

    def _candidates(self, query: Any, item: tuple[str, int] | None, target: str) -> tuple[np.ndarray, str]:
        """Eval-set rows of the ``depth`` candidates a pair head re-ranks, and what retrieved them."""
        if isinstance(self.retriever, RunSearcher):
            other = self.retriever
            if item is not None:
                result = other.search_item(str(query), k=self.depth)
            elif isinstance(query, NewText):
                result = other.search_text(query.text, k=self.depth, language=query.language)
            else:
                result = other.search_image(query.image, k=self.depth)
            lookup = self.models.image_row if target == "image" else self.models.text_row
            rows = np.array([lookup(i) for i in result.hits["item_id"]], dtype=np.int64)
            return rows, f"run {other.run_id}'s joint space ({other.models.head.name})"
        text = (query.text if isinstance(query, NewText)
                else self.models.text(query) if item is not None and item[0] == "text" else None)
        if target == "image" and text is not None and self.retriever in ("auto", "lexical"):
            return self._bm25.topk(text, self.depth), self._bm25.description
        if self.retriever == "lexical":
            raise ValueError("Lexical retrieval matches titles and needs a text query; use the 'cca' retriever or "
                             "another run with a joint space for photo queries.")
        _, rows = self._space.topk(self._query_vector(query, item, target), target, self.depth)
        return rows, self._space.description

    def _pair_scores(self, query: Any, rows: np.ndarray, target: str) -> np.ndarray:
        if not len(rows):
            return np.zeros(0, np.float32)
        if target == "image":
            ids = list(self.models.data.images["image_id"].iloc[rows])
            return self.models.score(ids, [query] * len(ids))
        ids = list(self.models.data.texts["text_id"].iloc[rows])
        return self.models.score([query] * len(ids), ids)

    def _true_rank(self, item: tuple[str, int], target: str, product: str | None,
                   ranked: tuple[np.ndarray, np.ndarray, str] | None) -> tuple[int | None, str | None]:
        """The first gallery item of the true product: its rank under pessimistic ties, or why there is none.
        ``ranked``: a pair head's (candidate rows, their scores, retriever); ranks are then among the candidates."""
        frame = self.models.data.images if target == "image" else self.models.data.texts
        gallery = self.image_rows if target == "image" else self.text_rows
        truth = (frame["product_id"].iloc[gallery] == product).to_numpy() if product is not None else None
        if truth is None or not truth.any():
            return None, f"the query's product has no {target} in the gallery ({self.gallery_description})"
        if ranked is None:
            scores = self._space.scores(self._space.vector(*item), target)
        else:
            candidates, candidate_scores, retriever = ranked
            scores = np.full(len(gallery), -np.inf)
            position = {r: j for j, r in enumerate(gallery)}
            scores[[position[r] for r in candidates]] = candidate_scores
            if not np.isfinite(scores[truth]).any():
                return None, f"the true product is not among the top {self.depth} of {retriever}"
        best = scores[truth].max()
        return int(1 + np.count_nonzero(scores[~truth] >= best)), None

    def _hits(self, target: str, rows: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        data = self.models.data
        frame = data.images if target == "image" else data.texts
        picked = frame.iloc[rows]
        return pd.DataFrame({
            "rank": np.arange(1, len(rows) + 1),
            "item_id": picked["image_id" if target == "image" else "text_id"].to_numpy(),
            "modality": target,
            "product_id": picked["product_id"].astype(object).where(picked["product_id"].notna(), None).to_numpy(),
            "score": np.asarray(scores, dtype=np.float64),
            "text": picked["text"].to_numpy() if target == "text" else None,
            "image_path": picked["path"].to_numpy() if target == "image" else None,
        }, columns=HIT_COLUMNS)


def _cca_view(models: RunModels) -> FusionHead:
    """A pair head's stand-in joint space, for its candidates and its similar items: CCA on its own encoder
    outputs, fitted exactly as the run's stored embeddings were (``run_embeddings``), so the two agree."""
    fd = models.fusion_data
    view = create_fusion_head("cca", n_components=min(16, fd.image_vecs.shape[1], fd.text_vecs.shape[1]))
    splits = pair_sets(models.data)
    view.fit(fd, splits["train"], splits["val"], seed=models.config.seed, device=models.device)
    return view


def restore_models(run_id: str, *, db: str | os.PathLike[str] | None = None, device: str | None = None,
                   progress: Callable[[str], None] | None = None) -> tuple[RunModels, float]:
    """A finished run's restored models and the seconds that took (encoders refit, head retrained). ``device``
    None: where the run ran (a run is reproducible only there)."""
    start = time.perf_counter()
    device = device or get_run(run_id, db=db).get("device") or "cpu"
    models = restore_run_models(run_id, db=db, device=device, progress=progress)
    return models, time.perf_counter() - start


def open_searcher(run_id: str, *, db: str | os.PathLike[str] | None = None, device: str | None = None,
                  gallery: str = "test", retriever: str | RunSearcher = "auto", depth: int = RERANK_DEPTH,
                  index: str = "exact", progress: Callable[[str], None] | None = None) -> RunSearcher:
    """Restore a finished run's models (:func:`restore_models`) and build its searcher."""
    models, seconds = restore_models(run_id, db=db, device=device, progress=progress)
    return RunSearcher(models, gallery=gallery, retriever=retriever, depth=depth, index=index, load_s=seconds)
