"""Content groups: products that share image bytes or a normalised title are one unit.

Real catalogues list the same photo (reseller copies) and the same title under several product ids. Splitting,
negative drawing and every statistic treat such products as one group, so no content sits on two sides of a
split and no "negative" is really a match.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from workbench.data.model import EvalSetData

_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the form under which two titles count as the same title."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", str(text)).casefold()).strip()


def content_groups(data: EvalSetData) -> dict[str, str]:
    """Map every product id to its content group: the smallest product id of its connected component.

    Two products are connected when they share an image (by SHA-256 of the bytes) or a positive text (by
    :func:`normalise_text`). Texts without a product (labelled negatives) connect nothing. Deterministic and
    independent of row order.
    """
    products = sorted({str(p) for p in data.products["product_id"]})
    index = {p: i for i, p in enumerate(products)}
    edges: list[tuple[int, int]] = []
    for frame, key in ((data.images, data.images.get("sha256")), (data.texts, None)):
        if frame is None or frame.empty:
            continue
        owners = frame["product_id"]
        keys = key if key is not None else frame["text"].map(normalise_text)
        valid = owners.notna() & keys.notna()
        table = pd.DataFrame({"key": keys[valid].astype(str).to_numpy(object),
                              "node": owners[valid].astype(str).map(index).to_numpy()}).dropna()
        # sorted products: the smallest index of a key is its smallest product id
        first = table.groupby("key")["node"].transform("min")
        edges.extend(zip(table["node"].astype(np.int64), first.astype(np.int64), strict=True))
    n = len(products)
    if not n:
        return {}
    rows, cols = (np.array(side, dtype=np.int64) for side in zip(*edges, strict=True)) if edges else ([], [])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # products are sorted, so the first member of each component is its smallest id
    first_member: dict[int, str] = {}
    for product, label in zip(products, labels, strict=True):
        first_member.setdefault(int(label), product)
    return {product: first_member[int(label)] for product, label in zip(products, labels, strict=True)}
