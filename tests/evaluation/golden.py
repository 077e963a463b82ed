"""The metrics of two configurations on a small bundled catalogue, recorded before the package move (issue 13).

`python -m tests.evaluation.golden` rewrites `data/golden_metrics.json`; `test_golden_metrics.py` re-computes
and compares. One weight-free config (TF-IDF + colour histogram + CCA) and one trained config (small CNN +
keyword text + contrastive head, few epochs) cover both code paths while staying quick on 2 cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).with_name("data") / "golden_metrics.json"
N_PRODUCTS, SEED = 60, 1
CONFIGS = {
    "weight-free": {
        "name": "golden-weight-free", "seed": 0,
        "image_encoder": {"type": "color_histogram"}, "text_encoder": {"type": "tfidf", "dim": 64},
        "fusion": {"type": "cca", "n_components": 8},
    },
    "trained": {
        "name": "golden-trained", "seed": 0,
        "image_encoder": {"type": "small_cnn", "dim": 32, "width": 8, "image_size": 32, "epochs": 1},
        "text_encoder": {"type": "keyword_text"},
        "fusion": {"type": "contrastive", "dim": 16, "hidden": 32, "epochs": 5},
    },
}


def compute(db: Path) -> dict[str, dict[str, float | None]]:
    """Create the catalogue in ``db``, run both configs, and return {config: {metric|slice: value}}."""
    from workbench.config import config_from_dict
    from workbench.data.evalsets import create_catalog_eval_set
    from workbench.evaluation.aggregate import load_metrics
    from workbench.run.runner import get_run, run

    create_catalog_eval_set("golden", db=db, n_products=N_PRODUCTS, seed=SEED)
    out: dict[str, dict[str, float | None]] = {}
    for key, raw in CONFIGS.items():
        run_id = run(config_from_dict(raw), "golden", db=db, device="cpu")
        status = get_run(run_id, db=db)["status"]
        if status != "done":
            raise RuntimeError(f"golden run {key} ended {status}: {get_run(run_id, db=db).get('error')}")
        frame = load_metrics(run_id, db=db, slices=True)
        out[key] = {
            f"{row.name}|{row.slice_kind}|{row.slice_value}": (None if row.value != row.value else float(row.value))
            for row in frame.itertuples(index=False)
        }
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        values = compute(Path(tmp) / "wb.duckdb")
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} ({sum(map(len, values.values()))} values)", file=sys.stderr)
