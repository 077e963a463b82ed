"""Static matplotlib figures for the PDF and Markdown reports (Agg backend; CJK-capable font fallback)."""

from __future__ import annotations

import io
import textwrap
from functools import lru_cache

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure, FigureBase  # noqa: E402

from workbench.reports import common  # noqa: E402
from workbench.reports.data import ReportData, RunReport  # noqa: E402

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR")
MONO_FONTS = ["DejaVu Sans Mono", "Noto Sans Mono CJK SC", "Noto Sans CJK SC"]
COLORS = plt.get_cmap("tab10").colors
PAGE = (11.69, 8.27)  # A4 landscape, inches


@lru_cache(maxsize=1)
def configure_fonts() -> tuple[str, ...]:
    """Font fallback DejaVu Sans → Noto Sans CJK SC/JP (when installed) so Chinese text renders; returns the list."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    # DejaVu first keeps Latin-only figures from loading the 20 MB CJK collection; CJK glyphs fall back to Noto.
    families = ("DejaVu Sans",) + tuple(f for f in CJK_FONTS[:2] if f in installed)
    matplotlib.rcParams["font.family"] = list(families)
    matplotlib.rcParams["axes.unicode_minus"] = False
    # Type 3 subsets (with ToUnicode maps, so text stays searchable); Type 42 subsetting of the CJK collection
    # through fontTools costs seconds per report.
    matplotlib.rcParams["pdf.fonttype"] = 3
    return families


def safe(text: object, width: int | None = None, max_len: int | None = None) -> str:
    """Untrusted text for matplotlib: ``$`` would start mathtext, so it is escaped; optionally wrapped/truncated."""
    value = "" if text is None or (not isinstance(text, str) and pd.isna(text)) else str(text)
    if max_len is not None and len(value) > max_len:
        value = value[: max_len - 1] + "…"
    if width is not None:
        value = "\n".join(textwrap.wrap(value, width)) or value
    return value.replace("$", r"\$")


def new_figure(size: tuple[float, float] = (10, 4.5)) -> Figure:
    configure_fonts()
    return Figure(figsize=size, layout="constrained")


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _label(run: RunReport, i: int) -> str:
    return safe(run.alias or (f"{run.config_name} · {run.run_id}" if i >= 0 else run.config_name), max_len=60)


def curves_figure(data: ReportData, fig: FigureBase | None = None) -> FigureBase:
    """ROC, precision–recall and reliability (val-calibrated test probabilities), one line per run; × = threshold.
    Drawn into ``fig`` when given (a region of a PDF page), else into a new figure; so are the builders below."""
    fig = fig or new_figure((11, 3.9))
    axes = fig.subplots(1, 3)
    roc, pr, rel = axes
    roc.plot([0, 1], [0, 1], ls=":", color="#999999", lw=1)
    rel.plot([0, 1], [0, 1], ls=":", color="#999999", lw=1)
    for i, run in enumerate(data.runs):
        curves = run.curves or {}
        color = COLORS[i % len(COLORS)]
        for ax, key, x, y in ((roc, "roc", "fpr", "tpr"), (pr, "pr", "recall", "precision")):
            points = curves.get(key)
            if not points:
                continue
            xs = np.asarray([np.nan if v is None else v for v in points[x]], dtype=float)
            ys = np.asarray([np.nan if v is None else v for v in points[y]], dtype=float)
            ax.plot(xs, ys, color=color, lw=1.6, label=_label(run, i))
            thr = np.asarray([np.nan if v is None else v for v in points.get("thresholds", [])], dtype=float)
            if run.threshold is not None and len(thr) == len(xs) and np.isfinite(thr).any():
                j = int(np.nanargmin(np.abs(np.where(np.isfinite(thr), thr, np.nan) - run.threshold)))
                ax.plot([xs[j]], [ys[j]], marker="x", color=color, ms=8, mew=2)
        reliability = curves.get("reliability")
        if reliability:
            mp = np.asarray([np.nan if v is None else v for v in reliability["mean_predicted"]], dtype=float)
            fp = np.asarray([np.nan if v is None else v for v in reliability["fraction_positive"]], dtype=float)
            keep = np.isfinite(mp) & np.isfinite(fp)
            rel.plot(mp[keep], fp[keep], marker="o", ms=3, color=color, label=_label(run, i))
    for ax, title, xl, yl in ((roc, "ROC (test)", "false positive rate", "true positive rate"),
                              (pr, "Precision–recall (test)", "recall", "precision"),
                              (rel, "Reliability (test, calibrated on val)", "mean calibrated probability",
                               "fraction of matches")):
        ax.set(title=title, xlabel=xl, ylabel=yl, xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
        ax.grid(alpha=0.3)
    if not any((r.curves or {}).get("reliability") for r in data.runs):
        rel.text(0.5, 0.5, "metrics computed before calibration:\nno reliability diagram", ha="center", va="center",
                 fontsize=8, color="#666666", transform=rel.transAxes)
    roc.legend(fontsize=7, loc="lower right")
    return fig


def confusion_figure(data: ReportData, fig: FigureBase | None = None) -> FigureBase:
    """One 2×2 confusion matrix per run at its stored threshold (test split)."""
    n = len(data.runs)
    fig = fig or new_figure((min(3.4 * n, 11), 3.0))
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, run in zip(axes, data.runs, strict=True):
        c = run.confusion
        z = np.array([[c["tp"], c["fn"]], [c["fp"], c["tn"]]])
        ax.imshow(z, cmap="Blues")
        total = max(int(z.sum()), 1)
        for (r, k), v in np.ndenumerate(z):
            ax.text(k, r, f"{v}\n{v / total:.1%}", ha="center", va="center", fontsize=9,
                    color="white" if v > z.max() * 0.6 else "black")
        ax.set_xticks([0, 1], ["pred. match", "pred. non-match"], fontsize=7)
        ax.set_yticks([0, 1], ["match", "non-match"], fontsize=7)
        ax.set_title(safe(f"{run.alias or run.config_name} (t = {common.fmt(run.threshold)})", max_len=40),
                     fontsize=8)
    return fig


def slices_figure(data: ReportData, *, metric: str = "pair/accuracy", max_slices: int = 24,
                  fig: FigureBase | None = None) -> FigureBase:
    """Heatmap slices × runs of one metric, worst first (lowest value across runs) among slices with enough pairs;
    slices with too few pairs follow in grey, labelled, and are never counted among the worst."""
    long = common.slices_long(data)
    long = long[long["name"] == metric] if not long.empty else long
    fig = fig or new_figure((10, 1.2 + 0.24 * min(max_slices, max(len(long), 1) // max(len(data.runs), 1) + 1)))
    ax = fig.subplots()
    if long.empty:
        ax.text(0.5, 0.5, f"No per-slice values of {metric}", ha="center", va="center")
        ax.axis("off")
        return fig
    few_col = long["too_few"].fillna(False).astype(bool) if "too_few" in long else False
    long = long.assign(slice=long["slice_kind"].astype(str) + ": " + long["slice_value"].astype(str), few=few_col)
    wide = long.pivot_table(index="slice", columns="run", values="value", aggfunc="first")
    wide = wide[[r.label for r in data.runs if r.label in wide.columns]]
    few = long.groupby("slice")["few"].any().reindex(wide.index)
    order = list(wide[~few].min(axis=1).sort_values().index) + sorted(wide.index[few])
    wide, few = wide.loc[order[:max_slices]], few.loc[order[:max_slices]].to_numpy()
    z = wide.to_numpy(dtype=float)
    ax.imshow(np.where(few[:, None], np.nan, z), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    if few.any():
        ax.imshow(np.where(few[:, None] & np.isfinite(z), 0.0, np.nan), cmap=ListedColormap(["#e0e0e0"]),
                  vmin=0, vmax=1, aspect="auto")
    for (r, k), v in np.ndenumerate(z):
        if np.isfinite(v):
            ax.text(k, r, f"{v:.3f}" + (f" ({common.TOO_FEW})" if few[r] else ""), ha="center", va="center",
                    fontsize=7, color="#666666" if few[r] else "black")
    ax.set_yticks(range(len(wide.index)), [safe(s, max_len=40) for s in wide.index], fontsize=7)
    ax.set_xticks(range(len(wide.columns)), [safe(c, max_len=34) for c in wide.columns], fontsize=7)
    ax.set_title(f"{metric} by slice, worst first (grey: {common.TOO_FEW}, never ranked)", fontsize=9)
    return fig


def retrieval_bar_figure(data: ReportData, fig: FigureBase | None = None) -> FigureBase:
    frame = common.retrieval_frame(data)
    fig = fig or new_figure((10, 3.6))
    ax = fig.subplots()
    if frame.empty:
        ax.text(0.5, 0.5, "No retrieval metrics", ha="center", va="center")
        ax.axis("off")
        return fig
    names = list(dict.fromkeys(frame["name"]))
    runs = list(dict.fromkeys(frame["run"]))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        sub = frame[frame["run"] == run].set_index("name").reindex(names)
        values = sub["value"].to_numpy(dtype=float)
        low = np.nan_to_num(values - sub["ci_low"].to_numpy(dtype=float))
        high = np.nan_to_num(sub["ci_high"].to_numpy(dtype=float) - values)
        ax.bar(np.arange(len(names)) + i * width - 0.4 + width / 2, values, width, yerr=[low, high], capsize=2,
               color=COLORS[i % len(COLORS)], label=safe(run, max_len=50))
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    ax.set(ylim=(0, 1.05), title="Retrieval (test gallery; error bars = 95% CI)")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return fig


def projection_figure(run: RunReport, *, max_points: int = 4000, fig: FigureBase | None = None) -> FigureBase:
    fig = fig or new_figure((6.5, 5.2))
    ax = fig.subplots()
    frame = run.projection.frame if run.projection is not None else pd.DataFrame()
    if frame.empty:
        ax.text(0.5, 0.5, safe(run.projection_note or "no projection", width=60), ha="center", va="center",
                fontsize=8)
        ax.axis("off")
        return fig
    if len(frame) > max_points:
        frame = frame.sample(max_points, random_state=0)
    for modality, marker, color in (("image", "o", COLORS[0]), ("text", "D", COLORS[1])):
        sub = frame[frame["modality"] == modality]
        ax.scatter(sub["x"], sub["y"], s=8, marker=marker, alpha=0.7, color=color, label=f"{modality} ({len(sub)})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=7)
    ax.set_title(safe(f"Joint space — {run.alias or run.config_name}", max_len=60), fontsize=9)
    return fig


def mismatch_figure(run: RunReport, *, per_row: int = 4, max_items: int = 16) -> Figure:
    """Thumbnail grid of the top false positives and false negatives (at most ``max_items``, split evenly)."""
    from PIL import Image

    half = max_items // 2
    rows = run.mismatches.groupby("kind", sort=False).head(half)
    n = max(len(rows), 1)
    n_rows = (n + per_row - 1) // per_row
    fig = new_figure((11, 2.1 * n_rows + 0.4))
    axes = np.atleast_1d(fig.subplots(n_rows, per_row)).ravel()
    for ax in axes:
        ax.axis("off")
    if rows.empty:
        axes[0].text(0, 0.5, "No mismatches on the test split.", fontsize=9)
        return fig
    for ax, row in zip(axes, rows.to_dict("records"), strict=False):
        if row["thumbnail"]:
            ax.imshow(Image.open(io.BytesIO(row["thumbnail"])))
        caption = f"{row['kind']} · score {common.fmt(row['score'])}\n" + safe(row["text"], width=38, max_len=110)
        ax.set_title(caption, fontsize=6.5, loc="left")
    fig.suptitle(safe(f"Top mismatches — {run.config_name} ({run.run_id})", max_len=90), fontsize=9)
    return fig


def figures(data: ReportData) -> dict[str, Figure]:
    """Every static figure of a report, keyed by a file-name-safe name (in reading order)."""
    out = {"curves": curves_figure(data), "confusion": confusion_figure(data), "slices": slices_figure(data),
           "retrieval": retrieval_bar_figure(data)}
    for i, run in enumerate(data.runs):
        out[f"projection_{i + 1}"] = projection_figure(run)
        out[f"mismatches_{i + 1}"] = mismatch_figure(run)
    return out
