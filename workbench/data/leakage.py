"""Leakage between splits at content level: one product, one image (by its bytes) or one title in two splits.

A model evaluated on test content it saw in train looks better than it is. Generated splits assign whole
content groups (:func:`workbench.data.grouping.content_groups`), so this check finds nothing there and is stored
as proof; user-supplied splits are checked before import (strict mode rejects the rows, lenient mode imports
them with a warning). Near-duplicate images (same photo re-encoded or resized) can be reported with a perceptual
hash; they are never merged into groups, because a perceptual hash also matches distinct, similar photos.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from workbench.data.grouping import content_groups, normalise_text
from workbench.data.model import SPLITS, EvalSetData
from workbench.data.validation import RowIssue

LEAKAGE_KINDS = ("product", "image", "title")
MAX_LISTED = 20  # overlaps (and near-duplicate pairs) listed in the stored audit; counts are always complete
EXAMPLE_PAIRS = 3  # pair ids named per split in a listed overlap
NEAR_DUPLICATE_MAX_DISTANCE = 6  # Hamming distance between 64-bit pHashes at or below which images are near-duplicates
_KIND_LABELS = {"product": "product", "image": "image bytes (SHA-256)", "title": "normalised title"}


def _titles(texts: pd.DataFrame) -> pd.Series:
    """Each text's normalised form if it is a product's title (has a product), else NaN; normalised once per text."""
    return texts["text"].where(texts["product_id"].notna()).map(normalise_text, na_action="ignore")


def _pair_keys(data: EvalSetData, titles: pd.Series) -> pd.DataFrame:
    """Long frame (kind, key, split, pair_id): each pair's products, image hash and title (``titles``, aligned with
    ``data.texts``)."""
    if data.pairs is None or data.pairs.empty:
        raise ValueError("the eval set has no pairs to check; make pairs (make_pairs) or import labelled rows first")
    if data.pairs["split"].isna().any():
        raise ValueError(f"{int(data.pairs['split'].isna().sum())} pair(s) have no split; assign splits first")
    images = data.images[["image_id", "product_id", "sha256"]].rename(columns={"product_id": "image_product"})
    texts = pd.DataFrame({"text_id": data.texts["text_id"], "text_product": data.texts["product_id"],
                          "title": titles})
    pairs = data.pairs[["pair_id", "image_id", "text_id", "split"]].merge(images, on="image_id", how="left")
    pairs = pairs.merge(texts, on="text_id", how="left")
    frames = [
        pairs[["split", "pair_id"]].assign(kind="product", key=pairs["image_product"]),
        pairs[["split", "pair_id"]].assign(kind="product", key=pairs["text_product"]),
        pairs[["split", "pair_id"]].assign(kind="image", key=pairs["sha256"]),
        pairs[["split", "pair_id"]].assign(kind="title", key=pairs["title"]),
    ]
    long = pd.concat(frames, ignore_index=True).dropna(subset=["key"])
    long["key"] = long["key"].astype(str)
    return long[["kind", "key", "split", "pair_id"]].drop_duplicates().reset_index(drop=True)


def leaking_pairs(data: EvalSetData) -> pd.DataFrame:
    """Every (kind, key, split, pair_id) whose key (a product, an image hash, a title) sits in two or more splits.

    Sorted by kind (in :data:`LEAKAGE_KINDS` order), key, split and pair id.
    """
    return _leaks(_pair_keys(data, _titles(data.texts)))


def _leaks(long: pd.DataFrame) -> pd.DataFrame:
    n_splits = long.groupby(["kind", "key"])["split"].transform("nunique")
    leaks = long[n_splits > 1].copy()
    leaks["kind_order"] = leaks["kind"].map(LEAKAGE_KINDS.index)
    leaks = leaks.sort_values(["kind_order", "key", "split", "pair_id"], kind="stable")
    return leaks.drop(columns="kind_order").reset_index(drop=True)


def _shared(frame: pd.DataFrame, keys: pd.Series) -> int:
    """How many keys are held by two or more distinct products."""
    table = pd.DataFrame({"key": keys, "product": frame["product_id"]}).dropna()
    return int((table.groupby("key")["product"].nunique() > 1).sum())


def check_split_leakage(data: EvalSetData, *, max_listed: int = MAX_LISTED) -> dict:
    """How much content sits in more than one split, as a JSON-ready dict.

    ``content_groups`` / ``shared_groups``: groups found (all, and those of two or more products);
    ``shared_images`` / ``shared_titles``: image hashes and normalised titles held by several products;
    ``groups_across_splits``: content groups whose pairs sit in two or more splits; ``across_splits``: per kind,
    how many products, image hashes and titles sit in two or more splits; ``overlaps``: the first ``max_listed``
    of those (kind, key, pairs per split, up to :data:`EXAMPLE_PAIRS` pair ids per split).
    """
    titles = _titles(data.texts)
    long = _pair_keys(data, titles)
    leaks = _leaks(long)
    groups = content_groups(data)
    sizes = pd.Series(groups, dtype=object).value_counts()
    products = long[long["kind"] == "product"]
    group_splits = products.assign(group=products["key"].map(groups)).dropna(subset=["group"])
    keys = leaks.drop_duplicates(["kind", "key"])
    overlaps = []
    for kind, key in keys[["kind", "key"]].head(max_listed).itertuples(index=False):
        rows = leaks[(leaks["kind"] == kind) & (leaks["key"] == key)]
        by_split = {split: sorted(rows.loc[rows["split"] == split, "pair_id"]) for split in SPLITS
                    if (rows["split"] == split).any()}
        overlaps.append({"kind": kind, "key": key, "n_pairs": {s: len(p) for s, p in by_split.items()},
                         "example_pairs": {s: p[:EXAMPLE_PAIRS] for s, p in by_split.items()}})
    return {
        "content_groups": int(len(sizes)),
        "shared_groups": int((sizes > 1).sum()),
        "shared_images": _shared(data.images, data.images["sha256"]),
        "shared_titles": _shared(data.texts, titles),
        "groups_across_splits": int((group_splits.groupby("group")["split"].nunique() > 1).sum()),
        "across_splits": {kind: int((keys["kind"] == kind).sum()) for kind in LEAKAGE_KINDS},
        "overlaps": overlaps,
    }


def _short(kind: str, key: str) -> str:
    if kind == "image":
        return key[:12]
    return key if len(key) <= 60 else key[:57] + "…"


def _rows_text(rows: list[int], shown: int = 5) -> str:
    """"row 4", "rows 1, 2" or "rows 1, 2, 3, 5, 8 and 7 more"."""
    text = ("row " if len(rows) == 1 else "rows ") + ", ".join(str(r) for r in rows[:shown])
    return text + (f" and {len(rows) - shown} more" if len(rows) > shown else "")


def leakage_issues(leaks: pd.DataFrame, pair_rows: dict[str, int], *, severity: str) -> list[RowIssue]:
    """One ``split_leakage`` issue per source row of a leaking pair, naming the rows of the other splits.

    ``leaks`` comes from :func:`leaking_pairs`; ``pair_rows`` maps pair ids to 1-based source rows.
    """
    frame = leaks.assign(row=leaks["pair_id"].map(pair_rows)).dropna(subset=["row"])
    frame["row"] = frame["row"].astype(int)
    rows_by = {key: sorted(set(group["row"])) for key, group in frame.groupby(["kind", "key", "split"])}
    messages: dict[int, list[str]] = {}
    for (kind, key), group in frame.groupby(["kind", "key"], sort=False):
        splits = sorted(set(group["split"]), key=SPLITS.index)
        for split in splits:
            others = "; ".join(f"{other}: {_rows_text(rows_by[(kind, key, other)])}" for other in splits
                               if other != split)
            text = f"{_KIND_LABELS[kind]} {_short(kind, key)!r} is also in {others}"
            for row in rows_by[(kind, key, split)]:
                messages.setdefault(row, []).append(text)
    return [
        RowIssue(row=row, field="split", severity=severity, code="split_leakage",
                 message="; ".join(parts) + ". Keep each product, image and title in one split.")
        for row, parts in sorted(messages.items())
    ]


def leakage_message(name: str, audit: dict | None) -> str | None:
    """A one-line warning for an eval set whose stored audit found content in two splits, else None."""
    leakage = (audit or {}).get("leakage") or {}
    across = leakage.get("across_splits") or {}
    if not leakage.get("groups_across_splits") and not any(across.values()):
        return None
    parts = ", ".join(f"{across[k]} {k}{'s' if across[k] != 1 else ''}" for k in LEAKAGE_KINDS if across.get(k))
    return (
        f"Eval set {name!r} was imported with content leakage: {leakage.get('groups_across_splits', 0)} content "
        f"group(s) sit in more than one split ({parts}). Test metrics may be optimistic; see "
        f"`python -m workbench evalset show {name}`."
    )


def _phash(path: str) -> int | None:
    """64-bit pHash of an image (JPEGs decoded at reduced size; the hash works on 32×32 pixels anyway)."""
    import imagehash  # needed only by this optional report; keeps its import cost out of every eval-set import

    try:
        with Image.open(path) as image:
            image.draft("L", (64, 64))
            return int(str(imagehash.phash(image.convert("L"))), 16)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def near_duplicate_images(
    data: EvalSetData, *, max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE, max_listed: int = MAX_LISTED
) -> dict:
    """Pairs of images with different bytes whose 64-bit pHashes differ in at most ``max_distance`` bits.

    Byte-identical images count once (the smallest image id). Reported only, not merged into content groups.
    ``across_splits`` counts near-duplicate pairs whose images' pairs sit in different splits. Compares every two
    distinct images (quadratic, vectorised in chunks of 1024 rows).
    """
    if not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance must be between 0 and 64 bits, got {max_distance}")
    images = data.images.sort_values(["sha256", "image_id"]).drop_duplicates("sha256").reset_index(drop=True)
    hashes = [_phash(path) for path in images["path"]]
    readable = np.array([h is not None for h in hashes], dtype=bool)
    images = images[readable].reset_index(drop=True)
    codes = np.array([h for h in hashes if h is not None], dtype=np.uint64)
    splits: dict[str, frozenset[str]] = {}
    if data.pairs is not None:
        by_image = data.pairs.groupby("image_id")["split"].agg(lambda s: frozenset(s.dropna()))
        sha = dict(zip(data.images["image_id"], data.images["sha256"], strict=True))
        for image_id, image_splits in by_image.items():
            splits[sha[image_id]] = splits.get(sha[image_id], frozenset()) | image_splits
    found: list[tuple[int, int, int]] = []
    for start in range(0, len(codes), 1024):
        block = np.bitwise_count(codes[start : start + 1024, None] ^ codes[None, :])
        i, j = np.nonzero(block <= max_distance)
        i = i + start
        keep = j > i
        found.extend(zip(i[keep].tolist(), j[keep].tolist(), block[i[keep] - start, j[keep]].tolist(), strict=True))
    image_ids, products = images["image_id"].tolist(), images["product_id"].tolist()
    split_sets = [splits.get(sha, frozenset()) for sha in images["sha256"]]
    across = 0
    listed = []
    for i, j, distance in found:
        union = split_sets[i] | split_sets[j]
        across += len(union) > 1
        if len(listed) < max_listed:
            listed.append({"images": [image_ids[i], image_ids[j]], "products": [products[i], products[j]],
                           "splits": sorted(union, key=SPLITS.index), "distance": int(distance)})
    return {
        "method": f"pHash (imagehash, 64 bits), Hamming distance <= {max_distance}; reported, not merged",
        "max_distance": max_distance,
        "n_images": int(len(codes)),
        "n_unreadable": int((~readable).sum()),
        "pairs": len(found),
        "across_splits": int(across),
        "examples": listed,
    }
