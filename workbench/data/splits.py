"""Content-group splits and the labelled pairs of an eval set.

Splits assign whole content groups (no product, image or title on two sides), stratified by category,
deterministic from the seed. Every negative pairs an image with a text from the *same split* (see
:mod:`workbench.data.negatives`), so nothing leaks across splits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.data.grouping import content_groups
from workbench.data.model import PAIR_COLUMNS, TEXT_COLUMNS, EvalSetData
from workbench.data.negatives import NEGATIVE_KINDS, draw_negatives, stable_id

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def split_products(
    products: pd.DataFrame,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    groups: dict[str, str] | None = None,
) -> dict[str, str]:
    """Map each product id to train/val/test, whole content groups together, stratified by category.

    ``groups`` maps every product id to its content group (see :func:`workbench.data.grouping.content_groups`)
    so that products sharing image bytes or a title never sit on two sides of a split; None makes each product
    its own group. A group's category is its members' most common one (ties: the smallest name). Fractions hold
    in products: the shuffled order of groups is cut where each group's middle product falls. Deterministic for
    a seed and independent of row order.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    ids = products["product_id"].astype(str)
    if groups is None:
        group_of = ids
    else:
        missing = sorted(set(ids) - set(groups))
        if missing:
            raise ValueError(
                f"groups has no entry for {len(missing)} product(s), e.g. {missing[:5]}; map every product id "
                "to its group (content_groups(data) does)"
            )
        group_of = ids.map(lambda p: str(groups[p]))
    frame = pd.DataFrame({"group": group_of.to_numpy(), "category": products["category"].fillna("").astype(str)
                          .to_numpy()})
    counts = frame.value_counts(["group", "category"]).reset_index(name="n")
    counts = counts.sort_values(["group", "n", "category"], ascending=[True, False, True], kind="stable")
    first = counts.drop_duplicates("group")
    names = first["group"].to_numpy()
    categories = first["category"].to_numpy()
    sizes = frame["group"].value_counts().reindex(names).to_numpy()
    rng = np.random.default_rng(seed)
    # Each group gets its quantile within its own (shuffled) category; cutting the global order by those
    # quantiles stratifies by category while keeping the global fractions even for tiny categories.
    position = np.empty(len(names))
    for category in sorted(set(categories)):
        members = np.flatnonzero(categories == category)  # already sorted by group name
        position[members[rng.permutation(len(members))]] = (np.arange(len(members)) + rng.random()) / len(members)
    order = np.lexsort((names, position))
    middle = np.cumsum(sizes[order]) - sizes[order] / 2
    n_train = int(round(fractions[0] * len(ids)))
    n_val = int(round(fractions[1] * len(ids)))
    split_of = dict(zip(names[order], np.where(middle < n_train, "train",
                                               np.where(middle < n_train + n_val, "val", "test")), strict=True))
    return {product: str(split_of[group]) for product, group in zip(ids, group_of, strict=True)}


def _positive_pairs(images: pd.DataFrame, texts: pd.DataFrame) -> list[tuple[str, str]]:
    """Each text with one image of its product (round robin), and each image not yet used with the first text."""
    pairs: list[tuple[str, str]] = []
    text_groups = {p: sorted(g["text_id"]) for p, g in texts.dropna(subset=["product_id"]).groupby("product_id")}
    for product, group in images.groupby("product_id"):
        image_ids = sorted(group["image_id"])
        text_ids = text_groups.get(product, [])
        if not text_ids:
            continue
        used = set()
        for k, text_id in enumerate(text_ids):
            image_id = image_ids[k % len(image_ids)]
            used.add(image_id)
            pairs.append((image_id, text_id))
        pairs.extend((image_id, text_ids[0]) for image_id in image_ids if image_id not in used)
    return sorted(pairs)


def make_pairs(
    data: EvalSetData,
    *,
    negatives: tuple[str, ...] = NEGATIVE_KINDS,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> EvalSetData:
    """Return a copy of ``data`` with labelled pairs: positives plus at most one negative of each kind per positive.

    Sources that already carry labelled pairs keep them; rows without a split get their product's split.
    Attribute-swap negatives add counterfactual texts (``product_id`` None) to ``texts``. ``audit["negatives"]``
    counts the negatives by kind, the swaps by attribute and the discarded candidates by reason (see
    :mod:`workbench.data.negatives`). Deterministic for a seed, whatever the order of the rows.
    """
    unknown = sorted(set(negatives) - set(NEGATIVE_KINDS))
    if unknown:
        raise ValueError(f"Unknown negative kind(s) {unknown}. Available: {list(NEGATIVE_KINDS)}")
    groups = content_groups(data)
    assignment = split_products(data.products, seed=seed, fractions=fractions, groups=groups)
    image_product = dict(zip(data.images["image_id"], data.images["product_id"].astype(str), strict=True))

    if data.pairs is not None:
        pairs = data.pairs.copy()
        for column in PAIR_COLUMNS:
            if column not in pairs:
                pairs[column] = None
        missing = pairs["split"].isna()
        pairs.loc[missing, "split"] = [assignment[image_product[i]] for i in pairs.loc[missing, "image_id"]]
        kinds = pairs.loc[pairs["label"] == 0, "pair_kind"].value_counts()
        audit = {"by_kind": {str(k): int(n) for k, n in sorted(kinds.items())}, "swaps_by_attribute": {},
                 "discarded": {}}
        return EvalSetData(data.products, data.attributes, data.images, data.texts, pairs[list(PAIR_COLUMNS)],
                           audit={**data.audit, "negatives": audit})

    texts = data.texts.sort_values("text_id").reset_index(drop=True)
    positives = _positive_pairs(data.images, texts)
    drawn = draw_negatives(data, positives, split_of=assignment, groups=groups, kinds=tuple(negatives), seed=seed)
    rows = [(stable_id("pp-", i, t), i, t, 1, assignment[image_product[i]], "positive", None, None, None)
            for i, t in positives]
    pairs = pd.DataFrame(rows + drawn.rows, columns=list(PAIR_COLUMNS), dtype=object)  # missing stays None
    pairs["label"] = pairs["label"].astype("int64")
    if drawn.texts:
        texts = pd.concat([texts, pd.DataFrame(drawn.texts, columns=list(TEXT_COLUMNS))], ignore_index=True)
        texts = texts.drop_duplicates("text_id").reset_index(drop=True)
    return EvalSetData(data.products, data.attributes, data.images, texts, pairs,
                       audit={**data.audit, "negatives": drawn.audit})
