"""Tiny random Hugging Face models saved with ``save_pretrained`` (safetensors), plus tiny items and targets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "blue", "green", "black", "white", "cotton", "wool",
    "leather", "steel", "shirt", "t", "-", "tee", "bottle", "water", "bag", "shoe", "dress", "crimson",
    "红", "蓝", "绿", "黑", "白", "色", "纯", "棉", "羊", "毛", "皮", "钢", "衬", "衫", "水", "杯", "包", "鞋", "裙",
]  # fmt: skip
TINY = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
TINY_VISION = {**TINY, "image_size": 32, "patch_size": 8}

COLORS = {"red": (200, 30, 30), "blue": (30, 70, 200), "green": (40, 160, 60), "black": (20, 20, 20)}
TEXTS = [
    "red cotton shirt", "blue wool dress", "green leather bag", "black steel bottle", "white cotton tee",
    "红色纯棉衬衫", "蓝色羊毛裙", "绿色皮包", "黑色钢水杯", "白色纯棉T恤",
]  # fmt: skip


def _tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(vocab))


def _save_bert(folder: Path) -> Path:
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(VOCAB), max_position_embeddings=64, **TINY)).save_pretrained(folder)
    _tokenizer(folder).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Folders of tiny random models: bert, st (sentence-transformers layout), vit, clip, siglip, bert_pickle."""
    from transformers import (
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

    root = tmp_path_factory.mktemp("tiny_models")
    bert = _save_bert(root / "bert")

    st = root / "st"
    shutil.copytree(bert, st)
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 16, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (st / "modules.json").write_text(json.dumps(modules))
    (st / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))

    torch.manual_seed(0)
    vit = root / "vit"
    ViTModel(ViTConfig(**TINY_VISION)).save_pretrained(vit)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)

    text = {**TINY, "vocab_size": len(VOCAB), "max_position_embeddings": 32}
    clip = root / "clip"
    ids = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    CLIPModel(CLIPConfig(text_config={**text, **ids}, vision_config=TINY_VISION, projection_dim=8)).save_pretrained(
        clip
    )
    _tokenizer(clip).save_pretrained(clip)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip)

    siglip = root / "siglip"
    config = SiglipConfig(text_config={**text, "max_position_embeddings": 16}, vision_config=TINY_VISION)
    SiglipModel(config).save_pretrained(siglip)
    _tokenizer(siglip).save_pretrained(siglip)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(siglip)

    pickle_only = root / "bert_pickle"
    pickle_only.mkdir()
    shutil.copy(bert / "config.json", pickle_only)
    from transformers import AutoModel

    torch.save(AutoModel.from_pretrained(bert).state_dict(), pickle_only / "pytorch_model.bin")
    return {p.name: str(p) for p in root.iterdir()}


def _image(color: tuple[int, int, int], seed: int, stripes: bool) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, 12, (40, 48, 3)), 0, 255).astype(np.uint8)
    if stripes:
        pixels[:, ::8] = 255
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="session")
def image_items() -> list[Image.Image]:
    """20 small noisy solid-colour images (every other one striped), in COLORS order repeated."""
    return [_image(color, i, i % 2 == 1) for i, color in enumerate(list(COLORS.values()) * 5)]


@pytest.fixture(scope="session")
def text_items() -> list[str]:
    """20 English and Chinese product titles."""
    return TEXTS * 2


@pytest.fixture(scope="session")
def targets() -> dict[str, np.ndarray]:
    """Targets aligned with 20 items: category (2 classes), colour with unknowns, and a constant (unusable)."""
    color = np.tile(np.arange(4), 5)
    color[::7] = -1
    return {"category": np.arange(20) % 2, "attr.color": color, "attr.brand": np.zeros(20, dtype=np.int64)}
