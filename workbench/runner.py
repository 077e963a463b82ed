"""Run one configuration on one eval set: fit/encode (cached) → fusion head → scores → metrics, all in DuckDB.

One code path serves the CLI, the app (in a background thread) and the Python API (:func:`run`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench import security, store
from workbench.config import RunConfig, config_from_dict
from workbench.data.evalsets import ensure_demo_eval_set, load_eval_set, parse_demo_name
from workbench.data.model import SPLITS, EvalSetData
from workbench.data.vocab import tag_vector, text_tags
from workbench.device import describe_device, gpu_memory, resolve_device
from workbench.encoding import Cancelled, cached_hashes, decode_side, encode_with_cache, load_items, pad_tokens
from workbench.models import create_encoder, load_plugin
from workbench.models.fusion import FusionData, PairSet, create_fusion_head

STAGES = ("load", "fit_encoders", "encode_images", "encode_texts", "train", "score", "metrics")
TERMINAL = ("done", "failed", "cancelled")
BACKENDS = ("local", "ray")  # where encoding runs; "ray" needs requirements-scale.txt
HEARTBEAT_STALE_S = 120
ProgressCallback = Callable[[dict], None]


@dataclass
class RunContext:
    """Mutable state of one executing run: progress reporting, log and cancellation."""

    run_id: str
    db: str | os.PathLike[str] | None
    callback: ProgressCallback | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    log_lines: list[str] = field(default_factory=list)
    stage: str = "load"
    stage_started: float = field(default_factory=time.monotonic)
    last_write: float = 0.0
    gpu: dict | None = None
    write_lock: threading.Lock = field(default_factory=threading.Lock)  # heartbeat and progress share the row

    def beat(self, stop: threading.Event, every: float = 15.0) -> None:
        """Heartbeat from a side thread: a run busy in one long step still shows as alive."""
        while not stop.wait(every):
            try:
                with self.write_lock, store.connect(self.db, timeout=5) as con:
                    store.execute_retrying(con, "UPDATE runs SET heartbeat_at = ? WHERE run_id = ?",
                                           [datetime.now(), self.run_id])
            except store.StoreLockedError:
                continue

    def log(self, message: str) -> None:
        self.log_lines.append(f"{datetime.now():%H:%M:%S} {message}")
        self.report(force=True)

    def enter(self, stage: str) -> None:
        self.stage = stage
        self.stage_started = time.monotonic()
        self.report(0, 0, force=True)

    def report(self, done: int = 0, total: int = 0, *, force: bool = False, **extra) -> None:
        elapsed = time.monotonic() - self.stage_started
        eta = elapsed / done * (total - done) if done and total else None
        state = {"stage": self.stage, "stage_index": STAGES.index(self.stage), "n_stages": len(STAGES),
                 "done": done, "total": total, "elapsed_s": round(elapsed, 1),
                 "eta_s": None if eta is None else round(eta, 1), "gpu": self.gpu, **extra}
        if self.callback:
            self.callback(state)
        now = time.monotonic()
        if force or now - self.last_write > 0.5:
            self.last_write = now
            with self.write_lock, store.connect(self.db) as con:
                store.execute_retrying(
                    con, "UPDATE runs SET stage = ?, progress = ?, heartbeat_at = ?, log = ? WHERE run_id = ?",
                    [self.stage, json.dumps(state), datetime.now(), "\n".join(self.log_lines), self.run_id],
                )
                flag = con.execute("SELECT cancel_requested FROM runs WHERE run_id = ?", [self.run_id]).fetchone()
            if flag and flag[0]:
                self.cancel.set()
        if self.cancel.is_set():
            raise Cancelled(f"Run cancelled during stage '{self.stage}'.")

    def progress_for(self, **extra) -> Callable[[int, int], None]:
        return lambda done, total: self.report(done, total, **extra)

    def fraction_progress(self, fraction: float, message: str = "") -> None:
        """Encoders report fitting as (fraction done, message)."""
        self.report(int(round(fraction * 100)), 100, message=message)


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    import duckdb
    import sklearn
    import transformers

    return {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "transformers": transformers.__version__, "duckdb": duckdb.__version__, "numpy": np.__version__,
        "scikit-learn": sklearn.__version__, "git_sha": _git_sha(), "device": describe_device(device),
    }


def create_run(config: RunConfig, eval_set: str, *, db=None, device: str = "auto") -> str:
    """Register a queued run and return its id."""
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    with store.connect(db) as con:
        con.execute(
            "INSERT INTO runs (run_id, config_name, config, fingerprint, eval_set, seed, device, status, "
            "created_at, pid) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
            [run_id, config.name, json.dumps(config.to_dict()), config.fingerprint(), eval_set, config.seed,
             device, datetime.now(), os.getpid()],
        )
    return run_id


def request_cancel(run_id: str, *, db=None) -> None:
    with store.connect(db) as con:
        store.execute_retrying(con, "UPDATE runs SET cancel_requested = TRUE WHERE run_id = ?", [run_id])


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def list_runs(*, db=None, eval_set: str | None = None) -> pd.DataFrame:
    """All runs, newest first.

    A queued or running run whose process has died (or, while running, stopped its heartbeat) shows as
    'interrupted'; re-running its config resumes from the embedding cache.
    """
    with store.connect(db) as con:
        sql = ("SELECT run_id, config_name AS config, eval_set, status, stage, progress, device, seed, "
               "created_at, started_at, finished_at, heartbeat_at, pid, error, fingerprint FROM runs")
        params: list = []
        if eval_set:
            sql += " WHERE eval_set = ?"
            params.append(eval_set)
        runs = store.query_frame(con, sql + " ORDER BY created_at DESC", params)
    stale = datetime.now() - timedelta(seconds=HEARTBEAT_STALE_S)
    for i, row in runs.iterrows():
        if row["status"] in ("queued", "running"):
            dead = row["pid"] is not None and not pd.isna(row["pid"]) and not _pid_alive(row["pid"])
            silent = row["status"] == "running" and not pd.isna(row["heartbeat_at"]) and row["heartbeat_at"] < stale
            if dead or silent:
                runs.at[i, "status"] = "interrupted"
    finished = runs["finished_at"].notna() & runs["started_at"].notna()
    runs["duration_s"] = np.where(
        finished, (runs["finished_at"] - runs["started_at"]).dt.total_seconds(), np.nan
    ) if len(runs) else []
    return runs


def get_run(run_id: str, *, db=None) -> dict:
    with store.connect(db) as con:
        frame = store.query_frame(con, "SELECT * FROM runs WHERE run_id = ?", [run_id])
    if frame.empty:
        raise KeyError(f"Run {run_id!r} not found. See `python -m workbench runs` for the available runs.")
    row = frame.iloc[0].to_dict()
    for key in ("config", "progress", "environment", "timings", "curves"):
        row[key] = json.loads(row[key]) if row.get(key) else None
    return row


# --------------------------------------------------------------------------------------------------- fusion data
def _codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    classes = sorted(v for v in values.dropna().unique())
    lookup = {v: i for i, v in enumerate(classes)}
    return np.array([lookup.get(v, -1) if not pd.isna(v) else -1 for v in values], dtype=np.int64), classes


def product_attributes(data: EvalSetData) -> dict[str, dict[str, str]]:
    attrs: dict[str, dict[str, str]] = {p: {} for p in data.products["product_id"]}
    for product, name, value in data.attributes[["product_id", "name", "value"]].itertuples(index=False):
        attrs.setdefault(product, {})[name] = value
    for product, category in data.products[["product_id", "category"]].itertuples(index=False):
        if category is not None and not pd.isna(category):
            attrs.setdefault(product, {})["category"] = category
    return attrs


def fit_targets(data: EvalSetData, modality: str, product_ids: pd.Series) -> dict[str, np.ndarray]:
    """Supervised targets for trainable towers: category and each attribute, as integer codes (-1 unknown)."""
    attrs = product_attributes(data)
    names = sorted({n for a in attrs.values() for n in a if n != "brand"})
    return {
        name: _codes(pd.Series([attrs.get(p, {}).get(name) for p in product_ids], dtype=object))[0]
        for name in names
    }


def _hash_strings(values) -> str:
    digest = hashlib.sha256()
    for v in values:
        digest.update(str(v).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def _encoder_cache_key(encoder, config: RunConfig, train_hashes: list[str]) -> str:
    """Fitted encoders are keyed by their config, the train items and the seed (fitting is deterministic)."""
    base = hashlib.sha256(
        json.dumps([type(encoder).__name__, encoder.get_config_dict()], sort_keys=True, default=str).encode()
    ).hexdigest()
    if not encoder.requires_fit:
        return encoder.fingerprint()
    return hashlib.sha256(f"{base}|{_hash_strings(sorted(train_hashes))}|{config.seed}".encode()).hexdigest()


# ------------------------------------------------------------------------------------- encoders and head (shared)
def create_side_encoder(config: RunConfig, modality: str):
    """A fresh (unfitted) encoder of one side of ``config``."""
    spec = dict(config.image_encoder if modality == "image" else config.text_encoder)
    return create_encoder(spec.pop("type"), **spec)


def side_items(data: EvalSetData, modality: str) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """One side's item frame, its sources (image paths or texts) and which items occur in train pairs."""
    frame = data.images if modality == "image" else data.texts
    sources = frame["path"] if modality == "image" else frame["text"]
    pair_split = data.pairs.groupby("image_id" if modality == "image" else "text_id")["split"].first()
    in_train = frame[frame.columns[0]].map(pair_split).eq("train").to_numpy()
    return frame, sources, in_train


def side_cache_keys(db, encoder, config: RunConfig, data: EvalSetData, modality: str,
                    tokens: bool) -> tuple[str, str]:
    """The encoder's fingerprint in the cache and the key its vectors (and tokens) are read from."""
    frame, _, in_train = side_items(data, modality)
    cache_key = _encoder_cache_key(encoder, config, list(frame["sha256"][in_train]))
    key = cache_key + ("/tokens" if tokens else "")
    if not tokens and len(cached_hashes(db, cache_key + "/tokens", list(frame["sha256"]))) == frame["sha256"].nunique():
        key = cache_key + "/tokens"  # an earlier token-level run stored the pooled vectors too
    return cache_key, key


def fit_side_encoder(encoder, config: RunConfig, data: EvalSetData, modality: str, device: torch.device,
                     progress: Callable[[float, str], None] | None = None) -> None:
    """Fit a trainable encoder on the train split's items (deterministic for the config's seed)."""
    frame, sources, in_train = side_items(data, modality)
    items = load_items(modality, list(sources[in_train]), decode_side(encoder))
    targets = fit_targets(data, modality, frame["product_id"][in_train])
    encoder.fit(items, targets=targets, seed=config.seed, device=device, progress=progress)


def create_run_head(config: RunConfig):
    """A fresh (unfitted) fusion head of ``config``."""
    head_spec = dict(config.fusion)
    return create_fusion_head(head_spec.pop("type"), **head_spec)


def fit_run_head(head, config: RunConfig, data: EvalSetData, fusion_data: FusionData, device: torch.device,
                 progress=None) -> dict:
    """Train the head on the train pairs (early-stopped on val) from a freshly seeded RNG; returns its curves."""
    splits = pair_sets(data)
    _seed_everything(config.seed)
    return head.fit(fusion_data, splits["train"], splits["val"], seed=config.seed, device=device, progress=progress)


# ----------------------------------------------------------------------------------------------------------- run
def _encode_side(ctx: RunContext, config: RunConfig, data: EvalSetData, modality: str, device: torch.device,
                 tokens: bool, backend: str = "local", ray_address: str | None = None, actor_device: str = "auto",
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict, object]:
    encoder = create_side_encoder(config, modality)
    frame, sources, in_train = side_items(data, modality)
    cache_key, key = side_cache_keys(ctx.db, encoder, config, data, modality, tokens)
    n_unique = frame["sha256"].nunique()
    info: dict = {"encoder": encoder.name, "cache_key": key}

    fit_seconds = 0.0
    if encoder.requires_fit and len(cached_hashes(ctx.db, key, list(frame["sha256"]))) < n_unique:
        ctx.enter("fit_encoders")
        ctx.log(f"fitting {encoder.name} on {int(in_train.sum())} train {modality}s")
        start = time.perf_counter()
        fit_side_encoder(encoder, config, data, modality, device, ctx.fraction_progress)
        fit_seconds = time.perf_counter() - start
    ctx.enter("encode_images" if modality == "image" else "encode_texts")
    if backend == "ray":  # encoding on a Ray actor pool; the fitted encoder travels to the actors
        from workbench.scale.ray_backend import encode_with_ray

        vectors, token_list, stats = encode_with_ray(
            encoder, list(sources), list(frame["sha256"]), db=ctx.db, cache_key=key, device_type=actor_device,
            batch_size=config.batch_size, tokens=tokens, ray_address=ray_address, progress=ctx.progress_for(),
            cancel=ctx.cancel,
            work_dir=store.resolve_db_path(ctx.db).parent / "ray_work" / f"{ctx.run_id}-{modality}",
        )
    else:
        vectors, token_list, stats = encode_with_cache(
            encoder, list(sources), list(frame["sha256"]), db=ctx.db, cache_key=key, device=device,
            batch_size=config.batch_size, tokens=tokens, progress=ctx.progress_for(), cancel=ctx.cancel,
        )
    info.update(backend=backend, fit_s=round(fit_seconds, 3), encode_s=round(stats.seconds, 3), n_items=stats.n_items,
                n_cached=stats.n_cached, n_encoded=stats.n_encoded, forward_calls=stats.n_forward_calls,
                batch_size=stats.batch_size,
                fingerprint=cache_key)
    ctx.log(f"{modality}s: {stats.n_encoded} encoded, {stats.n_cached} from cache ({stats.seconds:.1f} s)")
    if token_list is None:
        return vectors, None, None, info, encoder
    toks, mask = pad_tokens(token_list)
    return vectors, toks, mask, info, encoder


def build_fusion_data(data: EvalSetData, image_side, text_side) -> FusionData:
    attrs = product_attributes(data)
    image_tags = np.stack([tag_vector(attrs.get(p, {})) for p in data.images["product_id"]])
    text_tag = np.stack([text_tags(t, lang) for t, lang in zip(data.texts["text"], data.texts["language"],
                                                               strict=True)])
    category = dict(zip(data.products["product_id"], data.products["category"], strict=True))
    image_category, _ = _codes(pd.Series([category.get(p) for p in data.images["product_id"]], dtype=object))
    return FusionData(
        image_vecs=image_side[0], text_vecs=text_side[0],
        image_tokens=image_side[1], image_mask=image_side[2],
        text_tokens=text_side[1], text_mask=text_side[2],
        image_tags=image_tags.astype(np.float32), text_tags=text_tag.astype(np.float32),
        image_product=data.images["product_id"].to_numpy(dtype=object),
        text_product=data.texts["product_id"].to_numpy(dtype=object),
        image_category=image_category,
    )


def pair_sets(data: EvalSetData) -> dict[str, PairSet]:
    image_index = {v: i for i, v in enumerate(data.images["image_id"])}
    text_index = {v: i for i, v in enumerate(data.texts["text_id"])}
    out = {}
    for split in SPLITS:
        rows = data.pairs[data.pairs["split"] == split]
        out[split] = PairSet(
            image_idx=rows["image_id"].map(image_index).to_numpy(dtype=np.int64),
            text_idx=rows["text_id"].map(text_index).to_numpy(dtype=np.int64),
            label=rows["label"].to_numpy(dtype=np.int64),
        )
    return out


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def execute_run(run_id: str, *, db=None, device: str = "auto", callback: ProgressCallback | None = None,
                cancel: threading.Event | None = None, backend: str = "local", ray_address: str | None = None) -> str:
    """Execute a queued run to completion; returns the final status. Never raises for a failed run.

    ``backend="ray"`` encodes on a Ray cluster (``ray_address``, else a local instance); heads and metrics stay here.
    """
    from workbench.evaluation import evaluate_run

    record = get_run(run_id, db=db)
    config = config_from_dict(record["config"])
    ctx = RunContext(run_id, db, callback, cancel or threading.Event())
    timings: dict = {"backend": backend, **({"ray_address": ray_address} if ray_address else {})}
    status, error = "done", None
    with store.connect(db) as con:
        store.execute_retrying(con, "UPDATE runs SET status = 'running', started_at = ?, heartbeat_at = ?, pid = ? "
                               "WHERE run_id = ?", [datetime.now(), datetime.now(), os.getpid(), run_id])
    stop_beat = threading.Event()
    threading.Thread(target=ctx.beat, args=(stop_beat,), name=f"heartbeat-{run_id}", daemon=True).start()
    try:
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}. Available: {list(BACKENDS)}")
        torch_device = resolve_device(device)
        ctx.gpu = gpu_memory(torch_device)
        for plugin in config.plugins:
            ctx.log(f"plug-in {plugin}: registered {load_plugin(plugin)}")
        _seed_everything(config.seed)
        ctx.enter("load")
        demo = parse_demo_name(record["eval_set"])
        if demo:  # the bundled catalogue is generated the first time a run needs it
            ensure_demo_eval_set(db=db, n_products=demo[0], seed=demo[1], progress=ctx.progress_for())
        with store.connect(db) as con:
            data = load_eval_set(con, record["eval_set"])
            eval_hash = con.execute("SELECT content_hash FROM eval_sets WHERE name = ?",
                                    [record["eval_set"]]).fetchone()[0]
            store.execute_retrying(con, "UPDATE runs SET eval_set_hash = ?, environment = ?, device = ? "
                                   "WHERE run_id = ?",
                                   [eval_hash, json.dumps(environment(torch_device)), torch_device.type, run_id])
        ctx.log(f"eval set {record['eval_set']}: {len(data.images)} images, {len(data.texts)} texts, "
                f"{len(data.pairs)} pairs; device {torch_device}")
        head = create_run_head(config)
        tokens = head.uses_tokens
        # Ray actors pick their own device from the cluster's resources unless the user asked for the CPU.
        where = {"backend": backend, "ray_address": ray_address, "actor_device": "cpu" if device == "cpu" else "auto"}
        image_side = _encode_side(ctx, config, data, "image", torch_device, tokens, **where)
        text_side = _encode_side(ctx, config, data, "text", torch_device, tokens, **where)
        timings["image_encoder"], timings["text_encoder"] = image_side[3], text_side[3]
        ctx.gpu = gpu_memory(torch_device)

        ctx.enter("train")
        fusion_data = build_fusion_data(data, image_side, text_side)
        splits = pair_sets(data)
        start = time.perf_counter()
        curves = fit_run_head(head, config, data, fusion_data, torch_device,
                              progress=lambda epoch, total, info=None: ctx.report(epoch, total, **(info or {})))
        timings["train_s"] = round(time.perf_counter() - start, 3)
        ctx.log(f"trained {head.name} in {timings['train_s']} s")

        ctx.enter("score")
        start = time.perf_counter()
        scored = []
        for split in SPLITS:
            pairs = splits[split]
            scores = head.score_pairs(fusion_data, pairs.image_idx, pairs.text_idx) if len(pairs.label) else []
            ids = data.pairs.loc[data.pairs["split"] == split, "pair_id"]
            scored.append(pd.DataFrame({"run_id": run_id, "pair_id": ids.to_numpy(), "split": split,
                                        "score": np.asarray(scores, dtype=np.float64)}))
        scores_frame = pd.concat(scored, ignore_index=True)
        if not np.isfinite(scores_frame["score"]).all():
            raise ValueError(f"The fusion head produced {int((~np.isfinite(scores_frame['score'])).sum())} "
                             "non-finite scores (NaN/inf); check the encoders' outputs.")
        with store.connect(db) as con, store.transaction(con):
            con.execute("DELETE FROM scores WHERE run_id = ?", [run_id])
            store.insert_frame(con, "scores", scores_frame)
        timings["score_s"] = round(time.perf_counter() - start, 3)

        ctx.enter("metrics")
        start = time.perf_counter()
        evaluate_run(run_id, db=db, data=data, fusion_data=fusion_data, head=head, config=config,
                     text_encoder=text_side[4], device=torch_device)
        timings["metrics_s"] = round(time.perf_counter() - start, 3)
        with store.connect(db) as con:
            store.execute_retrying(con, "UPDATE runs SET curves = ? WHERE run_id = ?",
                                   [json.dumps(curves, default=float), run_id])
    except Cancelled as exc:
        status, error = "cancelled", str(exc)
        ctx.log_lines.append(str(exc))
    except Exception as exc:  # a failed run is recorded with a readable error, never re-raised
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        ctx.log_lines.append(traceback.format_exc())
    stop_beat.set()
    with ctx.write_lock, store.connect(db) as con:
        store.execute_retrying(
            con,
            "UPDATE runs SET status = ?, error = ?, finished_at = ?, timings = ?, log = ?, heartbeat_at = ? "
            "WHERE run_id = ?",
            [status, error, datetime.now(), json.dumps(timings, default=float), "\n".join(ctx.log_lines),
             datetime.now(), run_id],
        )
    return status


def run(config: RunConfig, eval_set: str, *, db=None, device: str = "auto",
        callback: ProgressCallback | None = None, cancel: threading.Event | None = None, backend: str = "local",
        ray_address: str | None = None) -> str:
    """Python API: create and execute a run synchronously; returns the run id (check its status)."""
    run_id = create_run(config, eval_set, db=db, device=device)
    execute_run(run_id, db=db, device=device, callback=callback, cancel=cancel, backend=backend,
                ray_address=ray_address)
    return run_id


_threads: dict[str, threading.Thread] = {}


def start_background_run(config: RunConfig, eval_set: str, *, db=None, device: str = "auto") -> str:
    """Start a run in a daemon thread of this process (the app's server); it outlives page switches/refreshes.

    The app's entry point, so a config that runs outside code is refused unless the server opted in
    (:func:`workbench.security.check_app_run_config`).
    """
    security.check_app_run_config(config)
    run_id = create_run(config, eval_set, db=db, device=device)
    thread = threading.Thread(target=execute_run, args=(run_id,), kwargs={"db": db, "device": device},
                              name=f"run-{run_id}", daemon=True)
    _threads[run_id] = thread
    thread.start()
    return run_id


def start_background_batch(configs: list[RunConfig], eval_sets: list[str], *, db=None,
                           device: str = "auto") -> list[str]:
    """Queue a grid (configs × eval sets) and run it sequentially in one background thread (the app's entry
    point: refuses, before queueing anything, a config that runs outside code unless the server opted in)."""
    for config in configs:
        security.check_app_run_config(config)
    run_ids = [create_run(c, e, db=db, device=device) for e in eval_sets for c in configs]

    def work() -> None:
        for run_id in run_ids:
            if get_run(run_id, db=db)["cancel_requested"]:
                with store.connect(db) as con:
                    store.execute_retrying(con, "UPDATE runs SET status = 'cancelled', finished_at = ? "
                                           "WHERE run_id = ?", [datetime.now(), run_id])
                continue
            execute_run(run_id, db=db, device=device)

    thread = threading.Thread(target=work, name=f"batch-{run_ids[0] if run_ids else 'empty'}", daemon=True)
    for run_id in run_ids:
        _threads[run_id] = thread
    thread.start()
    return run_ids
