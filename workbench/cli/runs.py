"""The run commands: ``run``, ``configs``, ``runs`` (list, filter, ``runs edit`` names/tags/notes), ``cancel`` and
``demo``."""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd
from tqdm.auto import tqdm

from workbench.cli.common import AddCommand, print_table, progress_bar


def _run_with_bar(config, eval_set: str, args: argparse.Namespace) -> str:
    from workbench.run import runner
    from workbench.run.progress import Progress

    bar = tqdm(file=sys.stderr, dynamic_ncols=True, disable=None)
    current = {"stage": None}

    def callback(state: Progress) -> None:
        if current["stage"] != state.stage:
            current["stage"] = state.stage
            bar.set_description(f"[{state.stage_index + 1}/{state.n_stages}] {state.stage}")
            bar.reset(total=state.total or None)
        elif state.total and bar.total != state.total:
            bar.reset(total=state.total)
        bar.n = state.done
        bar.refresh()

    run_id = runner.create_run(config, eval_set, db=args.db, device=args.device, name=getattr(args, "name", None),
                               tags=getattr(args, "tag", None))
    try:
        runner.execute_run(run_id, db=args.db, device=args.device, callback=callback,
                           backend=getattr(args, "backend", "local"), ray_address=getattr(args, "ray_address", None))
    except KeyboardInterrupt:
        runner.request_cancel(run_id, db=args.db)
        raise
    finally:
        bar.close()
    return run_id


def cmd_run(args: argparse.Namespace) -> int:
    from workbench.config import load_config
    from workbench.run import runner

    config = load_config(args.config, db=args.db).with_seed(args.seed)
    run_id = _run_with_bar(config, args.eval_set, args)
    record = runner.get_run(run_id, db=args.db)
    if record["status"] != "done":
        print(f"Run {run_id} {record['status']}: {record['error']}", file=sys.stderr)
    print(run_id)
    return 0 if record["status"] == "done" else 1


def cmd_configs(args: argparse.Namespace) -> int:
    from workbench.config import SAVED_PREFIX, config_catalog

    catalog = config_catalog(args.db)
    for problem in catalog.problems:
        print(f"skipped a saved config: {problem}", file=sys.stderr)
    configs = [
        {"name": c.name, "label": label, "saved": label.startswith(SAVED_PREFIX), "description": c.description,
         "offline": c.offline, "image_encoder": c.image_encoder, "text_encoder": c.text_encoder, "fusion": c.fusion,
         "fingerprint": c.fingerprint()}
        for label, c in catalog.configs.items()
    ]
    if args.json:
        print(json.dumps(configs, indent=2, ensure_ascii=False))
    else:
        print_table(pd.DataFrame([
            {"name": c["label"], "offline": c["offline"], "image": c["image_encoder"]["type"],
             "text": c["text_encoder"]["type"], "fusion": c["fusion"]["type"], "description": c["description"]}
            for c in configs
        ]))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from workbench.run.runner import list_runs, set_run_metadata

    if args.action == "edit":
        if not args.run_id:
            raise SystemExit("runs edit needs a RUN_ID")
        if args.tag and args.no_tags:
            raise SystemExit("runs edit: give --tag or --no-tags, not both")
        tags = [] if args.no_tags else args.tag
        if args.name is None and tags is None and args.notes is None:
            raise SystemExit("runs edit: nothing to change; give --name, --tag (repeatable), --no-tags or --notes")
        meta = set_run_metadata(args.run_id, name=args.name, tags=tags, notes=args.notes, db=args.db)
        print(json.dumps({"run_id": args.run_id, **meta}, ensure_ascii=False))
        return 0
    if args.run_id:
        raise SystemExit(f"unexpected {args.run_id!r}: `runs` lists runs; use `runs edit RUN_ID …` to edit one")
    if args.name is not None or args.notes is not None or args.no_tags:
        raise SystemExit("--name, --notes and --no-tags edit a run: `runs edit RUN_ID …`")
    if args.tag and len(args.tag) > 1:
        raise SystemExit("runs: filter by one --tag at a time")
    runs = list_runs(db=args.db, eval_set=args.eval_set, config=args.config, tag=(args.tag or [None])[0],
                     status=args.status)
    columns = ["run_id", "name", "config", "eval_set", "status", "stage", "device", "seed", "created_at",
               "duration_s", "error"]
    if args.json:
        records = json.loads(runs[columns].to_json(orient="records", date_format="iso"))
        for record, resolved, tags, notes in zip(records, runs["resolved"], runs["tags"], runs["notes"],
                                                 strict=True):
            record["resolved"] = json.loads(resolved) if isinstance(resolved, str) else None  # options as it ran
            record["tags"] = list(tags)
            record["notes"] = notes if isinstance(notes, str) else None
        print(json.dumps(records, ensure_ascii=False))
    else:
        table = runs[columns].drop(columns=["error"]).assign(tags=[", ".join(t) for t in runs["tags"]])
        print_table(table.fillna({"name": ""}))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from workbench.run.runner import request_cancel

    request_cancel(args.run_id, db=args.db)
    print(f"Cancellation requested for {args.run_id}.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from workbench.demo import demo_size, run_demo

    n_products, suite = demo_size("quick" if args.quick else "full")
    if args.quick and args.suite != "default":
        raise SystemExit("demo --quick runs its own three variants; drop --suite, or drop --quick")
    n_products = args.products or n_products
    suite = suite if args.quick else args.suite
    update, close = progress_bar("preparing the demo catalogue")
    try:
        result = run_demo(db=args.db, n_products=n_products, suite=suite, device=args.device,
                          catalog_progress=update, run=lambda config, eval_set: _run_with_bar(config, eval_set, args))
    finally:
        close()
    print_table(result)
    if args.suite == "reference" and "run_id" in result and len(result):
        from workbench.demo import comparison_table

        print("\nComparison against the baseline (first config); 95% CIs, Holm-corrected p-values:")
        print_table(comparison_table(list(result["run_id"]), result["run_id"].iloc[0], db=args.db))
    return 0


def register(add: AddCommand) -> None:
    """Declare this module's commands and their options."""
    p = add("run", cmd_run, "Run one configuration on an eval set; prints the run id last.")
    p.add_argument("--eval-set", required=True)
    p.add_argument("--config", required=True,
                   help="a .toml/.json file, a ready-made config's name, or a config saved in the app (NAME or "
                        "'saved: NAME'; saved configs live in the database's folder under configs/)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="where encoding runs: this process, or a Ray cluster (pip install -r requirements-scale.txt)")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="Ray cluster to join, e.g. ray://HOST:10001 or auto (default: start a local Ray instance)")
    p.add_argument("--name", default=None, help="a name for the run (shown in its label; editable: runs edit)")
    p.add_argument("--tag", action="append", default=None, metavar="TAG", help="a tag for the run (repeatable)")

    p = add("configs", cmd_configs, "List the ready-made configurations and those saved next to the database.")
    p.add_argument("--json", action="store_true")

    p = add("runs", cmd_runs, "List runs (filtered by eval set, config, tag or status), or edit one run's name, "
                              "tags and notes: runs edit RUN_ID [--name NAME] [--tag TAG …|--no-tags] [--notes TEXT].")
    p.add_argument("action", nargs="?", choices=["list", "edit"], default="list")
    p.add_argument("run_id", nargs="?", help="the run to edit (runs edit)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--eval-set", default=None, help="list: only runs on this eval set")
    p.add_argument("--config", default=None, help="list: only runs of this config name")
    p.add_argument("--status", default=None,
                   choices=["queued", "running", "done", "failed", "cancelled", "interrupted"],
                   help="list: only runs with this status")
    p.add_argument("--tag", action="append", default=None, metavar="TAG",
                   help="list: only runs with this tag; edit: the run's tags (repeatable; replaces its tags)")
    p.add_argument("--no-tags", action="store_true", help="edit: remove every tag")
    p.add_argument("--name", default=None, help='edit: the new name ("" clears it)')
    p.add_argument("--notes", default=None, help='edit: the new notes ("" clears them)')

    p = add("cancel", cmd_cancel, "Ask a running run (from the app or another shell) to stop.")
    p.add_argument("run_id")

    p = add("demo", cmd_demo, "Bundled catalogue + default offline configs end to end; prints a results table.")
    p.add_argument("--quick", action="store_true",
                   help="a quick look: 500 products, three heads over cheap encoders (under a minute on 2 cores)")
    p.add_argument("--products", type=int, default=None, help="catalogue size (default 2000; 500 with --quick)")
    p.add_argument("--suite", default="default", choices=["default", "reference", "all"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
