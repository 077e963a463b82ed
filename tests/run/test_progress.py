"""The one progress protocol: a typed record that round-trips through the run's row, reads rows written before
it, and is what a run reports through its callback and stores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.config import config_from_dict
from workbench.run import runner
from workbench.run.progress import STAGES, Progress

KEYWORD = {"name": "keyword-cosine", "image_encoder": {"type": "keyword_image"},
           "text_encoder": {"type": "keyword_text"}, "fusion": {"type": "cosine"}}


def test_record_round_trips_and_places_the_stage():
    record = Progress(stage="train", done=3, total=10, elapsed_s=1.5, eta_s=3.5, message="epoch 3",
                      gpu={"peak_gb": 1.0}, detail={"loss": 0.25})
    assert Progress.from_json(record.to_json()) == record
    assert Progress.from_json(json.loads(record.to_json())) == record
    assert record.stage_index == STAGES.index("train") and record.n_stages == len(STAGES)
    assert record.label() == f"{STAGES.index('train') + 1}/{len(STAGES)} train (3/10)"
    assert record.fraction() == pytest.approx((STAGES.index("train") + 0.3) / len(STAGES))
    assert record.fraction("done") == 1.0
    assert Progress(stage="load").label() == f"1/{len(STAGES)} load" and Progress(stage="load").fraction() == 0.0


def test_rows_written_before_the_record_are_read_and_bad_ones_are_none():
    legacy = {"stage": "train", "stage_index": 4, "n_stages": 7, "done": 2, "total": 5, "elapsed_s": 1.0,
              "eta_s": 1.5, "gpu": None, "loss": 0.5, "val_loss": 0.7}
    record = Progress.from_json(json.dumps(legacy))
    assert record.done == 2 and record.total == 5 and record.detail == {"loss": 0.5, "val_loss": 0.7}
    assert record.stage_index == STAGES.index("train")  # from the stage's name, not the stored index
    for bad in (None, "", "not json", "[1, 2]", {"stage": "warp"}, {"done": 1}, {"stage": "train", "done": "x"},
                {"stage": "train", "total": -1}):
        assert Progress.from_json(bad) is None, bad


def test_an_unknown_stage_or_a_negative_count_is_refused():
    with pytest.raises(ValueError, match="not a run stage"):
        Progress(stage="warp")
    with pytest.raises(ValueError, match="done must be a non-negative integer"):
        Progress(stage="load", done=-1)
    counted = Progress(stage="score", done=np.int64(2), total=np.int64(4))  # numpy counts become plain ints
    assert type(counted.done) is int and json.loads(counted.to_json())["total"] == 4


def test_a_run_reports_records_in_stage_order_and_stores_the_last(catalog_db, tmp_path):
    path, name = catalog_db
    db = tmp_path / "runs.duckdb"
    db.write_bytes(path.read_bytes())
    seen: list[Progress] = []
    run_id = runner.run(config_from_dict(KEYWORD), name, db=db, device="cpu", callback=seen.append)
    record = runner.get_run(run_id, db=db)
    assert record["status"] == "done", record["error"]
    assert all(isinstance(p, Progress) for p in seen)
    stages = list(dict.fromkeys(p.stage for p in seen))
    assert stages == [s for s in STAGES if s != "fit_encoders"]  # keyword encoders need no fitting
    assert all(0 <= p.done <= p.total or p.total == 0 for p in seen)
    stored = Progress.from_json(record["progress"])
    assert stored is not None and stored.stage == "metrics"
