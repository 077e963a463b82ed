"""``search``: query a finished run's gallery with a text or a photo, or list an item's nearest neighbours."""

from __future__ import annotations

import argparse
import json
import sys

from workbench.cli.common import AddCommand, print_table


def cmd_search(args: argparse.Namespace) -> int:
    from workbench.data.images import load_image
    from workbench.run.search import QUERY_IMAGE_SIDE, open_searcher

    given = [q for q in (args.query, args.image, args.similar_to) if q is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of QUERY, --image or --similar-to")
    retriever = args.retriever
    if retriever not in ("auto", "lexical", "cca"):  # another run with a joint space
        retriever = open_searcher(retriever, db=args.db, device=args.device, gallery=args.gallery,
                                  index=args.index)
    searcher = open_searcher(args.run_id, db=args.db, device=args.device, gallery=args.gallery,
                             retriever=retriever, depth=args.depth, index=args.index,
                             progress=lambda message: print(f"restoring {args.run_id}: {message}", file=sys.stderr))
    if args.similar_to is not None:
        result = searcher.similar(args.similar_to, k=args.k)
    elif args.image is not None:
        result = searcher.search_image(load_image(args.image, max_side=QUERY_IMAGE_SIDE), k=args.k)
    else:
        result = searcher.search_text(args.query, k=args.k)
    summary = (f"{result.run_id} · {result.query} · {result.method} · {result.gallery} · "
               f"{result.latency_ms['total']:.1f} ms (models restored in {searcher.load_s:.1f} s)")
    if result.true_rank is not None or result.note:
        summary += f" · true product rank: {result.true_rank or result.note}"
    if args.json:
        print(summary, file=sys.stderr)
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False, allow_nan=False))
        return 0
    print(summary)
    hits = result.hits.assign(item=result.hits["text"].fillna(result.hits["image_path"]),
                              score=result.hits["score"].round(4))
    print_table(hits[["modality", "rank", "product_id", "score", "item"]])
    return 0


def register(add: AddCommand) -> None:
    """Declare this module's commands and their options."""
    p = add("search", cmd_search,
            "Search a run's gallery with a text (images come back) or a photo (texts come back), or list an "
            "item's nearest images and texts (--similar-to); rebuilds the run's models.")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("query", metavar="QUERY", nargs="?", default=None, help="a text query (English or Chinese)")
    p.add_argument("--k", type=int, default=10, help="results per modality (default 10)")
    p.add_argument("--image", metavar="PATH", default=None, help="a photo to search with instead of a text")
    p.add_argument("--similar-to", metavar="ITEM_ID", default=None,
                   help="an eval-set image_id or text_id: its nearest images and texts in the run's joint space")
    p.add_argument("--gallery", default="test", choices=["test", "all"],
                   help="test: the run's test-split gallery (default); all: every item of the eval set")
    p.add_argument("--retriever", default="auto", metavar="auto|lexical|cca|RUN_ID",
                   help="what a pair head (no joint space) re-ranks: BM25 over titles (lexical), a CCA view of its "
                        "encoder outputs (cca), or another run's joint space (RUN_ID); auto: lexical for texts, "
                        "cca for photos")
    p.add_argument("--depth", type=int, default=100, help="candidates a pair head re-ranks (default 100)")
    p.add_argument("--index", default="exact", choices=["exact", "hnsw", "ivf"],
                   help="exact top-k (default) or a FAISS index built over the gallery (needs faiss-cpu)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"],
                   help="where the run's models are rebuilt (default: the device the run ran on)")
    p.add_argument("--json", action="store_true",
                   help="print [{rank, product_id, score, text | image_path}] (plus modality for --similar-to)")
