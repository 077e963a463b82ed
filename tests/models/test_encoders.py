"""Encoder registry sweep, hand-checked fakes, fitted/trained encoders and Hugging Face loading."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.models import (
    Encoder,
    OfflineModelError,
    create_encoder,
    get_encoder_class,
    get_encoder_spec,
    list_encoders,
    load_plugin,
    register_encoder,
)
from workbench.models.encoders import tokenize

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CPU = torch.device("cpu")

Options = dict[str, Any]
# name -> models -> (tiny options, options that must change the fingerprint)
CASES: dict[str, Callable[[dict[str, str]], tuple[Options, Options]]] = {
    "keyword_text": lambda m: ({"keywords": ["red", "cotton", "红色"]}, {"keywords": ["red"]}),
    "keyword_image": lambda m: ({}, {"min_share": 0.5}),
    "tfidf": lambda m: ({"dim": 8}, {"dim": 8, "char_ngrams": True}),
    "color_histogram": lambda m: ({}, {"grid": 2}),
    "small_cnn": lambda m: (
        {"dim": 8, "width": 4, "image_size": 32, "epochs": 1, "batch_size": 8},
        {"dim": 8, "width": 4, "image_size": 32, "epochs": 2, "batch_size": 8},
    ),
    "gru_text": lambda m: (
        {"dim": 8, "hidden": 8, "embed_dim": 8, "epochs": 1, "batch_size": 8},
        {"dim": 8, "hidden": 8, "embed_dim": 8, "epochs": 1, "batch_size": 8, "lr": 0.01},
    ),
    "vgg_cnn": lambda m: (
        {"dim": 8, "width": 4, "blocks": 2, "convs_per_block": 2, "image_size": 16, "epochs": 1, "batch_size": 8},
        {"dim": 8, "width": 4, "blocks": 2, "convs_per_block": 1, "image_size": 16, "epochs": 1, "batch_size": 8},
    ),
    "small_resnet": lambda m: (
        {"dim": 8, "width": 4, "blocks": 2, "image_size": 16, "epochs": 1, "batch_size": 8},
        {"dim": 8, "width": 4, "blocks": 2, "blocks_per_stage": 2, "image_size": 16, "epochs": 1, "batch_size": 8},
    ),
    "lstm_text": lambda m: (
        {"dim": 8, "hidden": 8, "embed_dim": 8, "epochs": 1, "batch_size": 8},
        {"dim": 8, "hidden": 8, "embed_dim": 8, "epochs": 1, "batch_size": 8, "min_count": 2},
    ),
    "hf_text": lambda m: ({"model": m["bert"]}, {"model": m["bert"], "pooling": "cls"}),
    "minilm": lambda m: ({"max_length": 32}, {"max_length": 16}),
    "st_folder": lambda m: ({"model": m["st"]}, {"model": m["st"], "max_length": 8}),
    "hf_vision": lambda m: ({"model": m["vit"]}, {"model": m["vit"], "pooling": "cls"}),
    "clip_image": lambda m: ({"model": m["clip"]}, {"model": m["siglip"]}),
    "clip_text": lambda m: ({"model": m["clip"]}, {"model": m["clip"], "max_length": 8}),
}


def _fitted(name: str, options: Options, items: list, targets: dict[str, np.ndarray]) -> Encoder:
    encoder = create_encoder(name, **options)
    if encoder.requires_fit:
        encoder.fit(items, targets=targets, seed=0, device=CPU)
    return encoder


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("name", list_encoders())
def test_registry_sweep(name, tiny_models, image_items, text_items, targets):
    if name not in CASES:
        pytest.fail(f"Encoder '{name}' has no entry in CASES: add tiny options for it to the sweep")
    options, other = CASES[name](tiny_models)
    spec = get_encoder_spec(name)
    items = image_items if spec.modality == "image" else text_items
    encoder = _fitted(name, options, items, targets)
    config = encoder.get_config_dict()
    assert tuple(config) == spec.config_keys == tuple(spec.defaults)
    for key, default in spec.defaults.items():  # an option not given runs with its declared default
        if key not in options and default is not None:
            assert json.loads(json.dumps(config[key])) == default, key

    vecs = encoder.encode(items[:6])
    assert vecs.shape == (6, encoder.dim) and vecs.dtype == np.float32
    assert np.isfinite(vecs).all()
    if encoder.normalizes:
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)

    batch = encoder.preprocess(items[:3])
    if spec.token_level:
        tokens, mask = encoder.forward_tokens(batch, CPU)
        assert tokens.ndim == 3 and tokens.shape[0] == 3 and tokens.shape[2] == encoder.dim
        assert mask.dtype == torch.bool and mask.shape == tokens.shape[:2] and mask.any(1).all()
        assert torch.isfinite(tokens).all()
    else:
        with pytest.raises(NotImplementedError, match="not token-level"):
            encoder.forward_tokens(batch, CPU)

    same = _fitted(name, encoder.get_config_dict(), items, targets)
    assert same.fingerprint() == encoder.fingerprint()
    assert len(encoder.fingerprint()) == 64
    assert _fitted(name, other, items, targets).fingerprint() != encoder.fingerprint()


def test_registry_errors_name_the_choices():
    with pytest.raises(KeyError, match=r"Encoder 'nope' not found\. Available: \[.*'tfidf'"):
        create_encoder("nope")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['colour'\].*Valid config_keys: \['dim'"):
        create_encoder("tfidf", colour="red")
    assert set(list_encoders("image")) >= {"keyword_image", "color_histogram", "small_cnn", "hf_vision", "clip_image"}
    assert all(get_encoder_class(n).modality == "text" for n in list_encoders("text"))
    assert set(list_encoders(token_level=True)) >= {"small_cnn", "gru_text", "hf_text", "hf_vision"}
    with pytest.raises(ValueError, match="already registered"):

        @register_encoder
        class Impostor(get_encoder_class("tfidf")):  # same name, different class
            pass


def test_options_are_declared_once_in_defaults():
    spec = get_encoder_spec("small_cnn")
    assert spec.defaults == {"dim": 128, "width": 16, "image_size": 64, "epochs": 5, "batch_size": 32, "lr": 1e-3}
    spec.defaults["dim"] = 1  # a copy: the registry is unchanged
    assert get_encoder_spec("small_cnn").defaults["dim"] == 128
    encoder = create_encoder("small_cnn", dim="16", lr=1)  # towers cast counts to int and rates to float
    assert encoder.get_config_dict() == {**get_encoder_spec("small_cnn").defaults, "dim": 16, "lr": 1.0}
    assert type(encoder.dim) is int and type(encoder.lr) is float
    with pytest.raises(TypeError, match="sets config_keys; declare its options with their defaults in `defaults`"):

        class OldStyle(Encoder):
            name = "old_style"
            modality = "text"
            config_keys = ("dim",)

    class Listed(Encoder):
        name = "listed"
        modality = "text"
        defaults = {"words": ["a"]}

        def preprocess(self, items: list) -> list:
            return items

        def forward(self, batch: list, device: torch.device) -> torch.Tensor:
            return torch.zeros(len(batch), 1)

    first = Listed()
    first.words.append("b")  # each instance gets its own copy of a mutable default
    assert Listed().words == ["a"] and Listed(words=["c"]).get_config_dict() == {"words": ["c"]}
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['word'\] for encoder 'listed'"):
        Listed(word=["c"])
    with pytest.raises(ValueError, match="st_folder needs model = the path of a local sentence-transformers folder"):
        create_encoder("st_folder")


def test_listing_and_creating_does_not_load_weights(tiny_models):
    encoder = create_encoder("hf_text", model=tiny_models["bert"])
    assert encoder._loaded is None
    encoder.fingerprint()  # local folders are fingerprinted from their files
    assert encoder._loaded is None


def test_keyword_text_hand_checked():
    encoder = create_encoder("keyword_text", keywords=["red", "cotton t-shirt", "红色"])
    vecs = encoder.encode(["Red cotton T-shirt", "reddish cotton", "红色纯棉T恤", ""])
    np.testing.assert_array_equal(vecs, [[1, 1, 0], [0, 0, 0], [0, 0, 1], [0, 0, 0]])
    assert not encoder.normalizes and encoder.dim == 3


def test_keyword_image_hand_checked():
    encoder = create_encoder("keyword_image", colors=["red", "blue", "white"], min_share=0.25)
    half = np.zeros((20, 20, 3), dtype=np.uint8)
    half[:, :10] = (210, 20, 30)
    half[:, 10:] = (20, 60, 210)
    thin = np.full((20, 20, 3), (210, 20, 30), dtype=np.uint8)
    thin[:, :2] = (20, 60, 210)  # 10 % blue: below min_share
    images = [Image.new("RGB", (8, 8), (250, 250, 250)), Image.fromarray(half), Image.fromarray(thin)]
    np.testing.assert_array_equal(encoder.encode(images), [[0, 0, 1], [1, 1, 0], [1, 0, 0]])
    # A dominant colour outside the chosen names gives a zero row rather than a wrong name.
    np.testing.assert_array_equal(encoder.encode([Image.new("RGB", (8, 8), (40, 160, 60))]), [[0, 0, 0]])


def test_tfidf_segments_chinese_with_jieba():
    assert "纯棉" in tokenize("红色纯棉T恤")
    assert tokenize("Red Cotton-Shirt") == ["red", "cotton", "shirt"]
    corpus = ["红色纯棉T恤", "红色纯棉衬衫", "不锈钢保温水杯", "黑色真皮钱包", "蓝色牛仔裤", "白色运动鞋", "不锈钢炒锅"]
    encoder = create_encoder("tfidf", dim=6)
    encoder.fit(corpus, targets={}, seed=0)
    shirt, blouse, cup = encoder.encode(corpus[:3])
    assert _cos(shirt, blouse) > _cos(shirt, cup) + 0.3


def test_tfidf_refuses_to_encode_before_fit():
    with pytest.raises(RuntimeError, match="call fit"):
        create_encoder("tfidf").encode(["red shirt"])


def test_color_histogram_separates_colour_and_gradients():
    encoder = create_encoder("color_histogram")
    assert encoder.dim == 8 * 4 * 4 + 4 * 4 * 8
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, ::8] = 255
    vertical, horizontal = Image.fromarray(stripes), Image.fromarray(stripes.transpose(1, 0, 2))
    v, h = encoder.encode([vertical, horizontal])
    colour = slice(0, 128)
    np.testing.assert_allclose(v[colour], h[colour], atol=1e-6)  # same colours...
    assert _cos(v[128:], h[128:]) < 0.5  # ...different edge orientations
    red, blue = encoder.encode([Image.new("RGB", (9, 9), (200, 0, 0)), Image.new("RGB", (9, 9), (0, 0, 200))])
    assert _cos(red, blue) < 0.1


def test_minilm_real_weights_rank_paraphrases_first():
    encoder = create_encoder("minilm")
    shirt, tee, bottle = encoder.encode(["red cotton t-shirt", "crimson cotton tee", "steel water bottle"])
    assert encoder.dim == 384 and encoder.normalizes and encoder.offline
    assert shirt @ tee > shirt @ bottle + 0.2


@pytest.mark.parametrize("name", ["small_cnn", "gru_text", "vgg_cnn", "small_resnet", "lstm_text"])
def test_towers_are_deterministic_for_a_seed(name, image_items, text_items, targets, tmp_path):
    items = image_items if get_encoder_spec(name).modality == "image" else text_items
    options, _ = CASES[name]({})
    first, second, other_seed = (create_encoder(name, **options) for _ in range(3))
    for encoder, seed in ((first, 3), (second, 3), (other_seed, 4)):
        encoder.fit(items, targets=targets, seed=seed)
    for a, b in zip(first._module.state_dict().values(), second._module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(first.encode(items), second.encode(items))
    assert first.fingerprint() == second.fingerprint() != other_seed.fingerprint()

    loaded = type(first).load(first.save(tmp_path).parent)
    np.testing.assert_array_equal(loaded.encode(items), first.encode(items))
    assert loaded.fingerprint() == first.fingerprint()


def test_gru_text_handles_unseen_characters(text_items, targets):
    encoder = _fitted("gru_text", CASES["gru_text"]({})[0], text_items, targets)
    tokens, mask = encoder.forward_tokens(encoder.preprocess(["红色", "zzz 未见过", ""]), CPU)
    assert mask.sum(1).tolist() == [2, 7, 1]
    assert torch.isfinite(tokens).all()


def test_st_folder_reads_pooling_and_normalize(tiny_models):
    st = create_encoder("st_folder", model=tiny_models["st"])
    assert st.pooling == "cls" and st.normalizes and st.max_length == 24
    reference = create_encoder("hf_text", model=tiny_models["bert"], pooling="cls", normalize=True)
    texts = ["red cotton shirt", "红色纯棉衬衫"]
    np.testing.assert_allclose(st.encode(texts), reference.encode(texts), atol=1e-6)


def test_hf_text_pads_to_the_longest_in_the_batch(tiny_models):
    encoder = create_encoder("hf_text", model=tiny_models["bert"])
    batch = encoder.preprocess(["red", "red cotton shirt"])
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"].sum(1).tolist() == [3, 5]


def test_hf_vision_tokens_and_pooling(tiny_models, image_items):
    encoders = {p: create_encoder("hf_vision", model=tiny_models["vit"], pooling=p) for p in ("cls", "mean", "pooler")}
    tokens, _ = encoders["cls"].forward_tokens(encoders["cls"].preprocess(image_items[:2]), CPU)
    assert tokens.shape == (2, 1 + (32 // 8) ** 2, 16)
    cls, mean, pooler = (e.encode(image_items[:2]) for e in encoders.values())
    np.testing.assert_allclose(cls, tokens[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(mean, tokens.mean(1).numpy(), atol=1e-6)
    assert not np.allclose(cls, pooler)


def test_siglip_text_is_padded_to_max_length(tiny_models):
    siglip = create_encoder("clip_text", model=tiny_models["siglip"])
    assert siglip.preprocess(["red"])["input_ids"].shape == (1, 16)
    clip = create_encoder("clip_text", model=tiny_models["clip"])
    assert clip.preprocess(["red"])["input_ids"].shape == (1, 3)


def test_pickle_only_folders_are_refused(tiny_models):
    with pytest.raises(OSError):
        create_encoder("hf_text", model=tiny_models["bert_pickle"]).encode(["red"])


def test_hub_id_without_network_explains_how_to_get_the_model(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    encoder = create_encoder("clip_image", model="openai/clip-vit-base-patch32")  # creating is offline-safe
    with pytest.raises(OfflineModelError) as info:
        encoder.encode([Image.new("RGB", (8, 8))])
    message = str(info.value)
    assert "Could not load 'openai/clip-vit-base-patch32' from the Hugging Face Hub (no network?)" in message
    assert "huggingface-cli download openai/clip-vit-base-patch32 --local-dir models/clip-vit-base-patch32" in message
    assert 'model = "models/clip-vit-base-patch32"' in message and "HF_HOME" in message


@pytest.fixture
def unreachable_hub(monkeypatch, tmp_path) -> Path:
    """Online mode with the Hub at a closed local port (every connection refused at once) and an empty cache;
    returns the cache folder."""
    import socket

    import huggingface_hub.constants

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_unreachable_hub_fails_fast_with_the_offline_message(unreachable_hub):
    import time

    import transformers

    for auto in ("AutoModel", "AutoTokenizer"):  # import transformers' lazy modules outside the measurement
        getattr(transformers, auto)
    encoder = create_encoder("hf_text", model="no-such-org/no-such-model")
    start = time.perf_counter()
    with pytest.raises(OfflineModelError) as info:
        encoder.encode(["red"])
    elapsed = time.perf_counter() - start
    # huggingface_hub alone retries for 1 + 2 + 4 + 8 + 8 s before giving up.
    assert elapsed < 5.0, f"offline failure took {elapsed:.1f} s"
    message = str(info.value)
    assert "Could not load 'no-such-org/no-such-model' from the Hugging Face Hub (no network?)" in message
    assert "Cause: ConnectError" in message


def test_unreachable_hub_still_loads_a_cached_model(unreachable_hub, tiny_models):
    """The offline message recommends a cache (HF_HOME); a model found there loads without the network."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = unreachable_hub / "models--tiny-org--bert"
    shutil.copytree(tiny_models["bert"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    cached = create_encoder("hf_text", model="tiny-org/bert", pooling="cls").encode(["red mug", "blue"])
    local = create_encoder("hf_text", model=tiny_models["bert"], pooling="cls").encode(["red mug", "blue"])
    np.testing.assert_array_equal(cached, local)


def test_trust_remote_code_is_off_by_default_and_passed_through(monkeypatch, tiny_models):
    import transformers

    calls: list[tuple[str, dict[str, Any]]] = []
    for auto in ("AutoModel", "AutoTokenizer"):
        original = getattr(transformers, auto).from_pretrained

        def spy(*args: Any, _original=original, _auto=auto, **kwargs: Any) -> Any:
            calls.append((_auto, kwargs))
            return _original(*args, **kwargs)

        monkeypatch.setattr(getattr(transformers, auto), "from_pretrained", spy)
    create_encoder("hf_text", model=tiny_models["bert"]).encode(["red"])
    create_encoder("hf_text", model=tiny_models["bert"], trust_remote_code=True).encode(["red"])
    assert [kw["trust_remote_code"] for _, kw in calls] == [False, False, True, True]
    assert all(kw["use_safetensors"] for auto, kw in calls if auto == "AutoModel")


def test_lazy_loading_is_thread_safe(monkeypatch, tiny_models):
    import transformers

    loads: list[int] = []
    original = transformers.AutoModel.from_pretrained

    def counting(*args: Any, **kwargs: Any) -> Any:
        loads.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", counting)
    encoder = create_encoder("hf_text", model=tiny_models["bert"])
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(encoder.encode(["red shirt", "蓝色"]))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len(results) == 4
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def test_user_plugin_from_a_file(isolated_registry):
    assert load_plugin(EXAMPLES / "my_encoder_plugin.py") == ["example_grid_rgb"]
    assert load_plugin(str(EXAMPLES / "my_encoder_plugin.py")) == ["example_grid_rgb"]  # re-loading is fine
    encoder = create_encoder("example_grid_rgb", grid=2)
    vecs = encoder.encode([Image.new("RGB", (16, 16), (255, 0, 0))])
    np.testing.assert_allclose(vecs, [[1, 0, 0, 0, 0, 0] * 4], atol=1e-6)
    with pytest.raises(ValueError, match=r"Valid config_keys: \['grid'\]"):
        create_encoder("example_grid_rgb", size=3)


def test_user_plugin_from_a_module_name(isolated_registry, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.delitem(__import__("sys").modules, "my_encoder_plugin", raising=False)
    assert load_plugin("my_encoder_plugin") == ["example_grid_rgb"]
    assert "example_grid_rgb" in list_encoders("image")


def test_lstm_text_segments_chinese_into_words_with_jieba(text_items, targets):
    encoder = _fitted("lstm_text", CASES["lstm_text"]({})[0], text_items, targets)
    vocabulary = set(encoder.vocabulary)
    assert {"纯棉", "羊毛", "cotton", "shirt"} <= vocabulary  # multi-character Chinese words, lowercased English
    assert any(len(word) > 1 and tokenize(word) == [word] and "\u4e00" <= word[0] <= "\u9fff" for word in vocabulary)
    ids, lengths = encoder.preprocess(["红色纯棉衬衫", "Red COTTON shirt", "完全没见过"])
    assert lengths[0] == len(tokenize("红色纯棉衬衫")) < len("红色纯棉衬衫")  # words, not characters
    assert ids[1, :3].tolist() == [encoder._vocab[w] for w in ("red", "cotton", "shirt")]
    assert set(ids[2, : lengths[2]].tolist()) == {1}  # unseen words map to the unknown id
    tokens, mask = encoder.forward_tokens((ids, lengths), CPU)
    assert mask.sum(1).tolist() == lengths.tolist() and torch.isfinite(tokens).all()


@pytest.mark.parametrize("name", ["vgg_cnn", "small_resnet"])
def test_image_towers_give_one_region_token_per_final_cell(name, image_items):
    encoder = create_encoder(name, dim=8, width=4, blocks=3, image_size=32)
    encoder._module = encoder._make_module().eval()  # untrained weights suffice for shapes
    tokens, mask = encoder.forward_tokens(encoder.preprocess(image_items[:2]), CPU)
    assert tokens.shape == (2, (32 // 2**3) ** 2, 8) and mask.all()
    with pytest.raises(ValueError, match="multiple of 2\\*\\*blocks = 8"):
        create_encoder(name, blocks=3, image_size=36)


@pytest.mark.parametrize("name, folder", [("hf_vision", "vit"), ("clip_image", "clip"), ("clip_image", "siglip")])
def test_fast_image_transform_matches_the_processor(tiny_models, image_items, name, folder):
    """The threaded uint8 resize + on-device normalisation gives the processor's pixel values."""
    from workbench.models.hf_inputs import FastImageTransform, pixel_values

    options = {"model": tiny_models[folder]} | ({"pooling": "cls"} if name == "hf_vision" else {})
    encoder = create_encoder(name, **options)
    parts = encoder._components()
    assert isinstance(parts["fast"], FastImageTransform)
    wide = [image.resize((61, 45)) for image in image_items]  # aspect ratio and size both need work
    fast = pixel_values(parts, encoder.preprocess(wide), torch.device("cpu"))
    reference = parts["processor"](images=wide, return_tensors="pt")["pixel_values"]
    assert fast.shape == reference.shape
    assert torch.allclose(fast, reference, atol=0.02)
    slow = dict(parts, fast=None)
    assert torch.allclose(encoder.forward(encoder.preprocess(wide), torch.device("cpu")),
                          encoder.forward({"pixel_values": reference}, torch.device("cpu")) if name == "hf_vision"
                          else encoder.forward(_image_batch_slow(slow, wide), torch.device("cpu")), atol=1e-3)


def _image_batch_slow(parts, images):
    from workbench.models.hf_inputs import image_batch

    return image_batch(parts, images)
