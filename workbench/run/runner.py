"""Run one configuration on one eval set: fit/encode (cached) → fusion head → scores → artifacts → metrics, all
in DuckDB; and the run records (create, get, list, cancel).

One code path serves the CLI, the app (in a background thread) and the Python API (:func:`run`). The run ends by
calling :func:`workbench.evaluation.aggregate.compute_metrics` on what it stored (run → evaluation, never back).
The run records stay here with the execution (about 500 lines): the app, the CLI and the tests reach both through
one name, ``runner``, and the records' status columns are written by the execution itself.
"""

from __future__ import annotations

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
from workbench.evaluation.aggregate import compute_metrics
from workbench.models import load_plugin, resolved_options
from workbench.run.artifacts import store_artifacts
from workbench.run.device import ForwardOptions, describe_device, gpu_memory, resolve_device
from workbench.run.encoding import Cancelled, cached_hashes, encode_with_cache, pad_tokens
from workbench.run.fitting import (
    build_fusion_data,
    create_run_head,
    create_side_encoder,
    fit_run_head,
    fit_side_encoder,
    pair_sets,
    seed_everything,
    side_cache_keys,
    side_items,
)
from workbench.run.pixel_cache import PixelCache
from workbench.run.progress import STAGES, Progress

BACKENDS = ("local", "ray")  # where encoding runs; "ray" needs requirements-scale.txt
HEARTBEAT_STALE_S = 120
ProgressCallback = Callable[[Progress], None]


@dataclass
class RunContext:
    """Mutable state of one executing run: progress reporting, log and cancellation.

    Every report becomes one :class:`Progress` record: passed to ``callback`` and written to the run's row (at most
    every half second unless forced), where the cancel flag is read back.
    """

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

    def report(self, done: int = 0, total: int = 0, *, force: bool = False, message: str = "",
               detail: dict | None = None) -> None:
        elapsed = time.monotonic() - self.stage_started
        eta = elapsed / done * (total - done) if done and total else None
        state = Progress(stage=self.stage, done=done, total=total, elapsed_s=round(elapsed, 1),
                         eta_s=None if eta is None else round(eta, 1), message=message, gpu=self.gpu,
                         detail=dict(detail or {}))
        if self.callback:
            self.callback(state)
        now = time.monotonic()
        if force or now - self.last_write > 0.5:
            self.last_write = now
            with self.write_lock, store.connect(self.db) as con:
                store.execute_retrying(
                    con, "UPDATE runs SET stage = ?, progress = ?, heartbeat_at = ?, log = ? WHERE run_id = ?",
                    [self.stage, state.to_json(), datetime.now(), "\n".join(self.log_lines), self.run_id],
                )
                flag = con.execute("SELECT cancel_requested FROM runs WHERE run_id = ?", [self.run_id]).fetchone()
            if flag and flag[0]:
                self.cancel.set()
        if self.cancel.is_set():
            raise Cancelled(f"Run cancelled during stage '{self.stage}'.")

    def count_progress(self, done: int, total: int) -> None:
        """Encoding and catalogue generation report (items done, items in all)."""
        self.report(done, total)

    def fraction_progress(self, fraction: float, message: str = "") -> None:
        """Encoders report fitting as (fraction done, message)."""
        self.report(int(round(fraction * 100)), 100, message=message)

    def epoch_progress(self, epoch: int, total: int, info: dict | None = None) -> None:
        """Fusion heads report training as (epoch, epochs, the epoch's numbers such as losses)."""
        self.report(epoch, total, detail=info)


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


def create_run(config: RunConfig, eval_set: str, *, db=None, device: str = "auto", name: str | None = None,
               tags: list[str] | tuple[str, ...] | None = None, notes: str | None = None) -> str:
    """Register a queued run (with its queued progress record, and optionally a name, tags and notes) and return
    its id."""
    meta = _metadata(name=name, tags=tags, notes=notes)
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    queued = Progress.queued_record()
    with store.connect(db) as con:
        con.execute(
            "INSERT INTO runs (run_id, config_name, config, fingerprint, eval_set, seed, device, status, stage, "
            "progress, created_at, pid, name, tags, notes) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
            [run_id, config.name, json.dumps(config.to_dict()), config.fingerprint(), eval_set, config.seed,
             device, queued.stage, queued.to_json(), datetime.now(), os.getpid(), meta.get("name"),
             json.dumps(meta.get("tags", []), ensure_ascii=False), meta.get("notes")],
        )
    return run_id


MAX_NAME_CHARS = 200
MAX_TAG_CHARS = 50
MAX_NOTES_CHARS = 20_000


def _metadata(*, name: str | None, tags: list[str] | tuple[str, ...] | None, notes: str | None) -> dict:
    """The given fields checked and normalised (stripped; empty name or notes -> None; tags deduplicated in order);
    fields passed as None are left out, so callers change only what they pass."""
    meta: dict = {}
    if name is not None:
        if not isinstance(name, str) or "\n" in name or len(name.strip()) > MAX_NAME_CHARS:
            raise ValueError(f"name must be one line of at most {MAX_NAME_CHARS} characters, got {name!r}")
        meta["name"] = name.strip() or None
    if tags is not None:
        if isinstance(tags, str):
            raise ValueError(f"tags must be a list of strings, got the string {tags!r}; pass [{tags!r}]")
        cleaned = []
        for tag in tags:
            text = tag.strip() if isinstance(tag, str) else None
            if not text or len(text) > MAX_TAG_CHARS or "\n" in text or "," in text:
                raise ValueError(f"tag {tag!r} must be 1-{MAX_TAG_CHARS} characters without commas or newlines")
            cleaned.append(text)
        meta["tags"] = list(dict.fromkeys(cleaned))
    if notes is not None:
        if not isinstance(notes, str) or len(notes) > MAX_NOTES_CHARS:
            raise ValueError(f"notes must be text of at most {MAX_NOTES_CHARS:,} characters")
        meta["notes"] = notes.strip() or None
    return meta


def set_run_metadata(run_id: str, *, name: str | None = None, tags: list[str] | tuple[str, ...] | None = None,
                     notes: str | None = None, db=None) -> dict:
    """Change a run's name, tags and/or notes (what is None stays; "" or [] clears it); returns the run's
    ``{"name", "tags", "notes"}`` after the change. Metadata never touches results, so any run can be edited."""
    meta = _metadata(name=name, tags=tags, notes=notes)
    with store.connect(db) as con:
        if not con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]:
            raise KeyError(f"Run {run_id!r} not found. See `python -m workbench runs` for the available runs.")
        if "tags" in meta:
            meta["tags"] = json.dumps(meta["tags"], ensure_ascii=False)
        for column, value in meta.items():  # column names come from _metadata's fixed keys
            store.execute_retrying(con, f"UPDATE runs SET {column} = ? WHERE run_id = ?", [value, run_id])
        name_, tags_, notes_ = con.execute("SELECT name, tags, notes FROM runs WHERE run_id = ?", [run_id]).fetchone()
    return {"name": name_, "tags": _tag_list(tags_), "notes": notes_}


def _tag_list(raw) -> list[str]:
    """Stored tags as a list (runs made before tags existed have none)."""
    if raw is None or (not isinstance(raw, str | list) and pd.isna(raw)):
        return []
    return list(json.loads(raw)) if isinstance(raw, str) else list(raw)


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


def list_runs(*, db=None, eval_set: str | None = None, config: str | None = None, tag: str | None = None,
              status: str | None = None) -> pd.DataFrame:
    """All runs, newest first, with their ``name``, ``tags`` (a list) and ``notes``; optionally only those of one
    eval set, config name, tag or status.

    A queued or running run whose process has died (or, while running, stopped its heartbeat) shows as
    'interrupted' (and is found by ``status="interrupted"``); re-running its config resumes from the embedding
    cache.
    """
    where, params = [], []
    for column, value in (("eval_set", eval_set), ("config_name", config)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    with store.connect(db) as con:
        sql = ("SELECT run_id, config_name AS config, eval_set, status, stage, progress, device, seed, "
               "created_at, started_at, finished_at, heartbeat_at, pid, error, fingerprint, resolved, name, tags, "
               "notes FROM runs")
        if where:
            sql += " WHERE " + " AND ".join(where)
        runs = store.query_frame(con, sql + " ORDER BY created_at DESC", params)
    runs["tags"] = pd.Series([_tag_list(raw) for raw in runs["tags"]], index=runs.index, dtype=object)
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
    if tag:
        runs = runs[[tag in tags for tags in runs["tags"]]]
    if status:
        runs = runs[runs["status"] == status]
    return runs.reset_index(drop=True)


def get_run(run_id: str, *, db=None) -> dict:
    with store.connect(db) as con:
        frame = store.query_frame(con, "SELECT * FROM runs WHERE run_id = ?", [run_id])
    if frame.empty:
        raise KeyError(f"Run {run_id!r} not found. See `python -m workbench runs` for the available runs.")
    row = frame.iloc[0].to_dict()
    for key in ("config", "resolved", "progress", "environment", "timings", "curves"):
        row[key] = json.loads(row[key]) if row.get(key) else None
    row["tags"] = _tag_list(row.get("tags"))
    return row


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
            batch_size=config.batch_size, tokens=tokens, ray_address=ray_address, progress=ctx.count_progress,
            cancel=ctx.cancel,
            work_dir=store.resolve_db_path(ctx.db).parent / "ray_work" / f"{ctx.run_id}-{modality}",
        )
    else:
        vectors, token_list, stats = encode_with_cache(
            encoder, list(sources), list(frame["sha256"]), db=ctx.db, cache_key=key, device=device,
            batch_size=config.batch_size, tokens=tokens, progress=ctx.count_progress, cancel=ctx.cancel,
            pixel_cache=PixelCache.for_db(ctx.db), forward_options=ForwardOptions(compile=config.compile),
        )
    info.update(**stats.timings())
    info.update(backend=backend, fit_s=round(fit_seconds, 3), encode_s=round(stats.seconds, 3), n_items=stats.n_items,
                n_cached=stats.n_cached, n_encoded=stats.n_encoded, forward_calls=stats.n_forward_calls,
                batch_size=stats.batch_size,
                fingerprint=cache_key)
    ctx.log(f"{modality}s: {stats.n_encoded} encoded, {stats.n_cached} from cache ({stats.seconds:.1f} s)")
    if token_list is None:
        return vectors, None, None, info, encoder
    toks, mask = pad_tokens(token_list)
    return vectors, toks, mask, info, encoder


def _encoder_curves(db, sides: dict[str, tuple]) -> dict[str, dict]:
    """Training curves of the trainable encoders, by modality: from this run's fit, else (the fitted encoder's
    vectors came from the cache) those of the latest finished run that fitted the same encoder, with its id in
    ``from_run``."""
    out: dict[str, dict] = {}
    for modality, (*_, info, encoder) in sides.items():
        if encoder.fit_curves:
            out[modality] = {"encoder": encoder.name, **encoder.fit_curves}
        elif encoder.requires_fit:
            with store.connect(db) as con:
                earlier = con.execute(
                    "SELECT run_id, curves FROM runs WHERE status = 'done' AND json_extract_string(timings, ?) = ? "
                    "ORDER BY finished_at DESC", [f"$.{modality}_encoder.fingerprint", info["fingerprint"]],
                ).fetchall()
            for earlier_id, raw in earlier:
                found = (json.loads(raw or "{}").get("encoders") or {}).get(modality)
                if found:
                    out[modality] = {"from_run": earlier_id, **found}
                    break
    return out


def execute_run(run_id: str, *, db=None, device: str = "auto", callback: ProgressCallback | None = None,
                cancel: threading.Event | None = None, backend: str = "local", ray_address: str | None = None) -> str:
    """Execute a queued run to completion; returns the final status. Never raises for a failed run.

    ``backend="ray"`` encodes on a Ray cluster (``ray_address``, else a local instance); heads and metrics stay here.
    """
    record = get_run(run_id, db=db)
    config = config_from_dict(record["config"])
    ctx = RunContext(run_id, db, callback, cancel or threading.Event())
    timings: dict = {"backend": backend, **({"ray_address": ray_address} if ray_address else {})}
    status, error = "done", None
    with store.connect(db) as con:
        store.execute_retrying(con, "UPDATE runs SET status = 'running', started_at = ?, heartbeat_at = ?, pid = ?, "
                               "stage = ?, progress = ? WHERE run_id = ?",
                               [datetime.now(), datetime.now(), os.getpid(), STAGES[0],
                                Progress(stage=STAGES[0]).to_json(), run_id])
    stop_beat = threading.Event()
    threading.Thread(target=ctx.beat, args=(stop_beat,), name=f"heartbeat-{run_id}", daemon=True).start()
    try:
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}. Available: {list(BACKENDS)}")
        torch_device = resolve_device(device)
        ctx.gpu = gpu_memory(torch_device)
        for plugin in config.plugins:
            ctx.log(f"plug-in {plugin}: registered {load_plugin(plugin)}")
        seed_everything(config.seed)
        ctx.enter("load")
        demo = parse_demo_name(record["eval_set"])
        if demo:  # the bundled catalogue is generated the first time a run needs it
            ensure_demo_eval_set(db=db, n_products=demo[0], seed=demo[1], progress=ctx.count_progress)
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
        resolved = {"image_encoder": resolved_options(image_side[4]), "text_encoder": resolved_options(text_side[4]),
                    "fusion": resolved_options(head)}
        with store.connect(db) as con:
            store.execute_retrying(con, "UPDATE runs SET resolved = ? WHERE run_id = ?",
                                   [json.dumps(resolved, default=str), run_id])
        ctx.gpu = gpu_memory(torch_device)

        ctx.enter("train")
        fusion_data = build_fusion_data(data, image_side, text_side)
        splits = pair_sets(data)
        start = time.perf_counter()
        curves = fit_run_head(head, config, data, fusion_data, torch_device, progress=ctx.epoch_progress)
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

        ctx.enter("artifacts")
        start = time.perf_counter()
        store_artifacts(run_id, db=db, data=data, fusion_data=fusion_data, head=head, config=config,
                        text_encoder=text_side[4], device=torch_device)
        timings["artifacts_s"] = round(time.perf_counter() - start, 3)

        ctx.enter("metrics")
        start = time.perf_counter()
        compute_metrics(run_id, db=db, threshold_options=config.threshold, seed=config.seed)
        timings["metrics_s"] = round(time.perf_counter() - start, 3)
        curves["encoders"] = _encoder_curves(db, {"image": image_side, "text": text_side})
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
        ray_address: str | None = None, name: str | None = None, tags: list[str] | None = None) -> str:
    """Python API: create and execute a run synchronously; returns the run id (check its status)."""
    run_id = create_run(config, eval_set, db=db, device=device, name=name, tags=tags)
    execute_run(run_id, db=db, device=device, callback=callback, cancel=cancel, backend=backend,
                ray_address=ray_address)
    return run_id


def start_background_run(config: RunConfig, eval_set: str, *, db=None, device: str = "auto") -> str:
    """Start a run in a daemon thread of this process (the app's server); it outlives page switches/refreshes.

    The app's entry point, so a config that runs outside code is refused unless the server opted in
    (:func:`workbench.security.check_app_run_config`).
    """
    security.check_app_run_config(config)
    run_id = create_run(config, eval_set, db=db, device=device)
    thread = threading.Thread(target=execute_run, args=(run_id,), kwargs={"db": db, "device": device},
                              name=f"run-{run_id}", daemon=True)
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
    thread.start()
    return run_ids
