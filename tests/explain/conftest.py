"""Finished runs to explain, built once per session in one database (treat as read-only):

- ``squares``: photos of one coloured square at a random place on grey noise, titled with its colour; a small CNN
  trained on it, keyword text, contrastive head — a trained tower whose evidence sits in known cells;
- token heads (soft attention, cross-attention, attention fusion) on a tiny catalogue with CNN + GRU/LSTM towers;
- tiny random ViT / CLIP / SigLIP / BERT models saved with ``save_pretrained``, run on the same catalogue.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.config import config_from_dict
from workbench.run import runner

SQUARE_COLORS = {"red": (210, 30, 30), "green": (40, 170, 60), "blue": (30, 70, 210), "yellow": (235, 220, 40)}
FILLERS = ["item", "new", "classic", "sale", "gift", "daily", "studio", "basic"]
CNN = {"type": "small_cnn", "dim": 16, "width": 8, "image_size": 64, "epochs": 6, "lr": 3e-3}
SMALL_CNN = {"type": "small_cnn", "dim": 16, "width": 4, "image_size": 32, "epochs": 1}
GRU = {"type": "gru_text", "dim": 16, "hidden": 8, "embed_dim": 8, "epochs": 1}
LSTM = {"type": "lstm_text", "dim": 16, "hidden": 8, "embed_dim": 8, "epochs": 1}
TOKEN_HEADS = {
    "soft_attention_cosine": ({"type": "soft_attention_cosine", "width": 8, "epochs": 2}, GRU),
    "cross_attention": ({"type": "cross_attention", "width": 8, "num_heads": 2, "epochs": 2}, GRU),
    "attention_fusion": ({"type": "attention_fusion", "width": 8, "num_heads": 2, "hidden": 8, "epochs": 2}, LSTM),
}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "blue", "green", "black", "white", "cotton", "bag",
         "shirt", "lamp", "chair", "红", "蓝", "色", "纯", "棉", "衬", "衫"]
TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}
TINY_VISION = {**TINY, "image_size": 32, "patch_size": 8}


@dataclass(frozen=True)
class ExplainDB:
    path: Path
    runs: dict[str, str]  # name -> run id


def _squares_csv(root: Path, n_products: int = 64) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    names = list(SQUARE_COLORS)
    for k in range(n_products):
        color = names[k % len(names)]
        pixels = np.clip(128 + rng.normal(0, 10, (64, 64, 3)), 0, 255)
        top, left = rng.integers(0, 64 - 20, 2)
        pixels[top : top + 20, left : left + 20] = SQUARE_COLORS[color]
        path = root / f"sq{k:03d}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        words = list(rng.choice(FILLERS, 3, replace=False))
        rows.append({"image": str(path), "text": " ".join([color, "square", *words]), "product": f"sq{k:03d}",
                     "category": "square", "color": color, "language": "en"})
    target = root / "squares.csv"
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def _tiny_hf(root: Path) -> dict[str, str]:
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizerFast,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    def tokenizer(folder: Path) -> None:
        (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
        BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)

    torch.manual_seed(0)
    folders = {name: root / name for name in ("bert", "vit", "clip", "siglip")}
    BertModel(BertConfig(vocab_size=len(VOCAB), max_position_embeddings=64, **TINY)).save_pretrained(folders["bert"])
    tokenizer(folders["bert"])
    ViTModel(ViTConfig(**TINY_VISION)).save_pretrained(folders["vit"])
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folders["vit"])
    text = {**TINY, "vocab_size": len(VOCAB), "max_position_embeddings": 32, "pad_token_id": 0, "bos_token_id": 2,
            "eos_token_id": 3}
    CLIPModel(CLIPConfig(text_config=text, vision_config=TINY_VISION, projection_dim=8)).save_pretrained(
        folders["clip"])
    tokenizer(folders["clip"])
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folders["clip"])
    SiglipModel(SiglipConfig(text_config={**text, "max_position_embeddings": 16},
                             vision_config=TINY_VISION)).save_pretrained(folders["siglip"])
    tokenizer(folders["siglip"])
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folders["siglip"])
    return {name: str(path) for name, path in folders.items()}


@pytest.fixture(scope="session")
def explain_db(tmp_path_factory: pytest.TempPathFactory) -> ExplainDB:
    from workbench.data.evalsets import create_catalog_eval_set, import_eval_set

    root = tmp_path_factory.mktemp("explain")
    path = root / "wb.duckdb"
    create_catalog_eval_set("tiny", db=path, n_products=20, seed=4)
    (root / "squares").mkdir()
    import_eval_set(_squares_csv(root / "squares"), "squares", db=path, negatives=("random",), seed=0)
    hf = _tiny_hf(root / "hf")
    configs = {
        "squares": ("squares", {"image_encoder": CNN, "text_encoder": {"type": "keyword_text"},
                                "fusion": {"type": "contrastive", "dim": 8, "epochs": 40, "lr": 1e-2}}),
        "colorhist": ("tiny", {"image_encoder": {"type": "color_histogram"},
                               "text_encoder": {"type": "tfidf", "dim": 16}, "fusion": {"type": "cca",
                                                                                        "n_components": 4}}),
        **{name: ("tiny", {"image_encoder": SMALL_CNN, "text_encoder": text, "fusion": head})
           for name, (head, text) in TOKEN_HEADS.items()},
        "vit_bert": ("tiny", {"image_encoder": {"type": "hf_vision", "model": hf["vit"], "pooling": "cls"},
                              "text_encoder": {"type": "hf_text", "model": hf["bert"]},
                              "fusion": {"type": "contrastive", "dim": 8, "epochs": 2}}),
        "clip": ("tiny", {"image_encoder": {"type": "clip_image", "model": hf["clip"]},
                          "text_encoder": {"type": "clip_text", "model": hf["clip"]}, "fusion": {"type": "cosine"}}),
        "siglip": ("tiny", {"image_encoder": {"type": "clip_image", "model": hf["siglip"]},
                            "text_encoder": {"type": "clip_text", "model": hf["siglip"]},
                            "fusion": {"type": "cosine"}}),
    }
    runs = {}
    for name, (eval_set, config) in configs.items():
        run_id = runner.run(config_from_dict({"name": name, **config}), eval_set, db=path, device="cpu")
        record = runner.get_run(run_id, db=path)
        assert record["status"] == "done", f"{name}: {record['error']}"
        runs[name] = run_id
    return ExplainDB(path, runs)


@pytest.fixture(scope="session")
def restored(explain_db: ExplainDB):
    """``restored(name)``: the run's rebuilt models, once per session (treat as read-only)."""
    from workbench.run.restore import restore_run_models

    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = restore_run_models(explain_db.runs[name], db=explain_db.path)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def positives():
    """``positives(models, limit)``: ids of the run's positive test pairs, in pair-id order."""

    def ids(models, limit: int | None = None) -> list[str]:
        pairs = models.data.pairs
        chosen = list(pairs.loc[(pairs["split"] == "test") & (pairs["label"] == 1), "pair_id"])
        return chosen[:limit] if limit else chosen

    return ids
