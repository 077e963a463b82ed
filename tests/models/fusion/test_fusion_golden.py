"""Stored scores of a closed-form head (cca) and a trained one (concat_mlp, 2 epochs) on the synthetic task.

A refactoring of the heads must leave these scores unchanged. The tolerance only absorbs the last-bit differences
of BLAS kernels between CPUs; a changed initialisation, input order or loss moves the scores by orders of magnitude
more. Regenerate (only for an intended behaviour change) with
``PYTHONPATH=. python tests/models/fusion/test_fusion_golden.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from fusion_task import fit_head, make_data

GOLDEN = Path(__file__).parents[1] / "data" / "fusion_golden.npz"
HEADS = {"cca": {}, "concat_mlp": {"epochs": 2}}


def golden_scores() -> dict[str, np.ndarray]:
    """Val and test scores of each head in HEADS (seed 0, CPU)."""
    data, splits = make_data()
    scores = {}
    for name, overrides in HEADS.items():
        head, _ = fit_head(name, **overrides)
        for split in ("val", "test"):
            pairs = splits[split]
            scores[f"{name}/{split}"] = head.score_pairs(data, pairs.image_idx, pairs.text_idx)
    return scores


def test_scores_match_the_stored_values() -> None:
    stored = np.load(GOLDEN)
    scores = golden_scores()
    assert sorted(stored.files) == sorted(scores)
    for key, value in scores.items():
        assert value.dtype == stored[key].dtype and value.shape == stored[key].shape, key
        np.testing.assert_allclose(value, stored[key], rtol=1e-4, atol=1e-5, err_msg=key)
        assert np.ptp(stored[key]) > 1.0, f"{key}: stored scores too flat to detect a change"


if __name__ == "__main__":
    torch.set_num_threads(1)
    np.savez(GOLDEN, **golden_scores())
    print(f"wrote {GOLDEN}")
