"""The command line end to end: every command listed, import, run, runs --json with resolved options, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.models import get_encoder_spec
from workbench.models.fusion import get_fusion_spec

COMMANDS = ("catalog", "evalset", "run", "configs", "runs", "cancel", "demo", "metrics", "compare", "report")


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "workbench", "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in out.stdout


def test_configs_json_lists_offline_flags(capsys):
    assert main(["configs", "--json"]) == 0
    configs = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for c in configs}
    assert by_name["tfidf-colorhist-cca"]["offline"] is True
    assert by_name["clip-vit-b32"]["offline"] is False
    assert all({"name", "description", "offline"} <= set(c) for c in configs)


def test_catalog_evalset_run_metrics_flow(tmp_path: Path, capsys):
    db = str(tmp_path / "cli.duckdb")
    assert main(["--db", db, "catalog", "--name", "cat", "--products", "24", "--seed", "2"]) == 0
    assert main(["--db", db, "evalset", "list"]) == 0
    assert "cat" in capsys.readouterr().out
    assert main(["evalset", "show", "cat", "--db", db]) == 0
    assert "pairs_by_split" in capsys.readouterr().out
    config = tmp_path / "kw.toml"
    config.write_text('name = "kw"\n[image_encoder]\ntype = "keyword_image"\n[text_encoder]\ntype = "keyword_text"\n'
                      '[fusion]\ntype = "cosine"\n', encoding="utf-8")
    assert main(["--db", db, "run", "--eval-set", "cat", "--config", str(config), "--device", "cpu"]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["--db", db, "runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert runs[0]["run_id"] == run_id and runs[0]["status"] == "done" and runs[0]["config"] == "kw"
    # the config named only the plug-ins; the run records every option they ran with, defaults filled in
    assert runs[0]["resolved"] == {
        "image_encoder": {"type": "keyword_image", **get_encoder_spec("keyword_image").defaults},
        "text_encoder": {"type": "keyword_text", **get_encoder_spec("keyword_text").defaults},
        "fusion": {"type": "cosine", **get_fusion_spec("cosine").defaults},
    }
    assert main(["--db", db, "metrics", run_id, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for name in ("pair/accuracy", "pair/roc_auc", "t2i/success@1", "i2t/recall@10", "t2i/mrr", "i2t/ndcg@10"):
        assert set(metrics[name]) == {"value", "ci_low", "ci_high"}
    assert main(["--db", db, "evalset", "delete", "cat"]) == 0
    assert main(["--db", db, "evalset", "show", "cat"]) == 2
    assert "not found" in capsys.readouterr().err


def test_unknown_config_is_a_clear_error(tmp_path, capsys):
    assert main(["--db", str(tmp_path / "x.duckdb"), "run", "--eval-set", "nope", "--config", "nope"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "tfidf-colorhist-cca" in err


def test_import_strict_rejects_and_lenient_imports(tmp_path: Path, capsys):
    from PIL import Image

    for i, color in enumerate(["red", "blue", "green", "yellow"]):
        Image.new("RGB", (32, 32), color).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"")
    rows = ["image,title,product_id,category"]
    rows += [f"{i}.png,{c} mug {i},p{i},mug" for i, c in enumerate(["red", "blue", "green", "yellow"])]
    rows += ["broken.png,black mug,p9,mug", "missing.png,white mug,p10,mug"]
    source = tmp_path / "items.csv"
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    db = str(tmp_path / "imp.duckdb")
    report = tmp_path / "report.csv"
    assert main(["--db", db, "evalset", "validate", str(source)]) == 1
    assert main(["--db", db, "evalset", "import", str(source), "--name", "s", "--report", str(report)]) == 1
    out = capsys.readouterr()
    assert "zero_bytes" in out.out and "missing_file" in out.out and "--lenient" in out.err
    assert report.read_text().count("\n") >= 3
    assert main(["--db", db, "evalset", "list"]) == 0
    assert "(none)" in capsys.readouterr().out
    assert main(["--db", db, "evalset", "import", str(source), "--name", "s", "--lenient",
                 "--map", "text=title"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["n_images"] == 4
    from workbench.data.evalsets import get_eval_set_info

    assert get_eval_set_info("s", db)["n_images"] == 4


@pytest.mark.parametrize("bad", [["--map", "nonsense=col"], ["--map", "novalue"]])
def test_bad_mapping_is_rejected(tmp_path, bad):
    with pytest.raises(SystemExit):
        main(["--db", str(tmp_path / "x.duckdb"), "evalset", "import", str(tmp_path), "--name", "x", *bad])


def test_compare_json_is_strict_json(tmp_path: Path, capsys):
    db = str(tmp_path / "cmp.duckdb")
    assert main(["--db", db, "catalog", "--name", "cat", "--products", "24", "--seed", "2"]) == 0
    run_ids = []
    for fusion in ('type = "cosine"', 'type = "contrastive"\ndim = 4\nepochs = 2'):
        config = tmp_path / "c.toml"
        config.write_text(f'name = "c"\n[image_encoder]\ntype = "keyword_image"\n'
                          f'[text_encoder]\ntype = "keyword_text"\n[fusion]\n{fusion}\n', encoding="utf-8")
        assert main(["--db", db, "run", "--eval-set", "cat", "--config", str(config), "--device", "cpu"]) == 0
        run_ids.append(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["--db", db, "compare", *run_ids, "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert comparison["baseline"] == run_ids[0]
    assert {"pair/f1", "pair/accuracy", "pair/roc_auc"} <= set(comparison["tests"][0])
    assert main(["--db", db, "metrics", run_ids[1], "--json"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
