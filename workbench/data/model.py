"""The in-memory form of an eval set, shared by importers, the catalogue and the store."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

PRODUCT_COLUMNS = ("product_id", "category")
ATTRIBUTE_COLUMNS = ("product_id", "name", "value")
IMAGE_COLUMNS = ("image_id", "product_id", "path", "sha256", "width", "height")
TEXT_COLUMNS = ("text_id", "product_id", "text", "language", "sha256")
# swap_from / swap_to: the value names an attribute negative replaced and put in (None for other pairs)
PAIR_COLUMNS = (
    "pair_id", "image_id", "text_id", "label", "split", "pair_kind", "swapped_attribute", "swap_from", "swap_to",
)
SPLITS = ("train", "val", "test")
PAIR_KINDS = ("positive", "random", "hard", "attribute", "labelled")


def empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


@dataclass
class EvalSetData:
    """Products, attributes, images, texts and (optionally) labelled pairs of one eval set.

    Column layouts are the ``*_COLUMNS`` tuples above. ``pairs`` is None when the source only has matched
    (image, text) rows; negatives and splits are then generated (see :mod:`workbench.data.splits`).
    ``audit`` records how the pairs were made (negatives, discards, leakage); it is stored with the eval set.
    """

    products: pd.DataFrame
    attributes: pd.DataFrame = field(default_factory=lambda: empty_frame(ATTRIBUTE_COLUMNS))
    images: pd.DataFrame = field(default_factory=lambda: empty_frame(IMAGE_COLUMNS))
    texts: pd.DataFrame = field(default_factory=lambda: empty_frame(TEXT_COLUMNS))
    pairs: pd.DataFrame | None = None
    audit: dict = field(default_factory=dict)
