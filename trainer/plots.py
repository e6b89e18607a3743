"""PNG figures of a run, drawn from its summary (the `metrics.json` payload) alone.

Why from the summary: the same dict exists in the rank-0 worker at the end of training (the
tracker logs these figures to wandb), on the driver (trainer/results.py writes them next to
metrics.json) and later from any run directory (trainer/report.py), so one function per figure
serves all three and the figures cannot disagree.

matplotlib is imported lazily (only runs that draw pay its start-up) and used through its
object API on the Agg canvas: no pyplot global state, no display, safe in Ray workers.
Figures are rendered to bytes in memory and written through fsspec under a temporary name that
is then renamed, so a run directory on an object store never holds half a PNG.
"""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

import fsspec

CURVES, AT_K, CODE_USAGE = "curves.png", "metrics_at_k.png", "code_usage.png"
# file name -> alt text of the markdown image link (trainer/results.py embeds them in this order)
TITLES = {CURVES: "training curves", AT_K: "Recall@K and NDCG@K", CODE_USAGE: "codebook usage"}
LEVELS = ("coarse", "fine")


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A new (figure, Agg canvas) pair, independent of any pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, FigureCanvasAgg(fig)


def _png(fig: Any, canvas: Any) -> bytes:
    buf = io.BytesIO()
    canvas.print_png(buf)
    return buf.getvalue()


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the history entries that carry a numeric `key`."""
    pairs = [(int(h["epoch"]), float(h[key])) for h in history
             if isinstance(h.get(key), (int, float)) and "epoch" in h]
    return [e for e, _ in pairs], [v for _, v in pairs]


def curves_png(summary: dict[str, Any], metric: str = "recall@20") -> bytes | None:
    """Training loss and valid `metric` per epoch, the best-valid epoch marked; None without history."""
    history = summary.get("history") or []
    loss_x, loss_y = _series(history, "loss")
    valid_x, valid_y = _series(history, f"valid/{metric}")
    if not loss_x and not valid_x:
        return None
    fig, canvas = _figure(9, 3.5)
    ax_loss, ax_valid = fig.subplots(1, 2)
    ax_loss.plot(loss_x, loss_y, color="tab:blue")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_valid.plot(valid_x, valid_y, color="tab:green", marker="." if len(valid_x) < 50 else None)
    ax_valid.set(xlabel="epoch", ylabel=f"valid {metric}", title=f"valid {metric}")
    best = summary.get("best_epoch")
    if isinstance(best, int) and best in valid_x:
        score = valid_y[valid_x.index(best)]
        for ax in (ax_loss, ax_valid):
            ax.axvline(best, color="tab:red", linestyle="--", linewidth=1)
        ax_valid.plot([best], [score], marker="*", markersize=12, color="tab:red", linestyle="none",
                      label=f"best epoch {best}: {score:.4f}")
        ax_valid.legend(loc="lower right")
    for ax in (ax_loss, ax_valid):
        ax.grid(alpha=0.3)
    return _png(fig, canvas)


def at_k(metrics: dict[str, Any], family: str) -> tuple[list[int], list[float]]:
    """(Ks, values) of `family@K` keys (e.g. recall@10, recall@20, ...), sorted by K."""
    found = sorted((int(m.group(1)), float(v)) for key, v in metrics.items()
                   if (m := re.fullmatch(rf"{family}@(\d+)", key)) and isinstance(v, (int, float)))
    return [k for k, _ in found], [v for _, v in found]


def metrics_at_k_png(summary: dict[str, Any]) -> bytes | None:
    """Test Recall@K and NDCG@K over K at the best-valid epoch; None without such figures."""
    test = summary.get("best_test") or {}
    series = {family: at_k(test, family) for family in ("recall", "ndcg")}
    if not any(ks for ks, _ in series.values()):
        return None
    fig, canvas = _figure(5.5, 3.5)
    ax = fig.subplots()
    for family, (ks, values) in series.items():
        ax.plot(ks, values, marker="o", label=f"{'Recall' if family == 'recall' else 'NDCG'}@K")
        for k, v in zip(ks, values):
            ax.annotate(f"{v:.4f}", (k, v), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8)
    ks = sorted({k for ks, _ in series.values() for k in ks})
    ax.set_xticks(ks)
    ax.margins(y=0.15)  # room for the value labels above the top points
    ax.set(xlabel="K", ylabel="test", title=f"test at the best-valid epoch ({summary.get('best_epoch', '?')})")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig, canvas)


def code_usage_entry(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The history entry whose codebook counts are drawn: the best epoch's, else the latest with counts."""
    with_counts = [h for h in summary.get("history") or [] if isinstance(h.get("codebook/coarse_counts"), list)]
    if not with_counts:
        return None
    best = [h for h in with_counts if h.get("epoch") == summary.get("best_epoch")]
    return (best or with_counts)[-1]


def code_usage_png(summary: dict[str, Any]) -> bytes | None:
    """Items per code of each codebook level (codes sorted by usage); None when no counts were recorded."""
    entry = code_usage_entry(summary)
    if entry is None:
        return None
    levels = [name for name in LEVELS if isinstance(entry.get(f"codebook/{name}_counts"), list)]
    fig, canvas = _figure(4.5 * len(levels), 3.5)
    axes = fig.subplots(1, len(levels), squeeze=False)[0]
    for ax, name in zip(axes, levels):
        counts = sorted((float(c) for c in entry[f"codebook/{name}_counts"]), reverse=True)
        used = sum(c > 0 for c in counts)
        ax.bar(range(len(counts)), counts, width=1.0, color="tab:purple")
        perplexity = entry.get(f"codebook/{name}_perplexity")
        extra = f", perplexity {perplexity:.1f}" if isinstance(perplexity, (int, float)) else ""
        ax.set(xlabel="code (sorted by usage)", ylabel="items", title=f"{name}: {used}/{len(counts)} used{extra}")
        ax.xaxis.get_major_locator().set_params(integer=True)  # code ranks, not positions
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"codebook usage at the start of epoch {entry.get('epoch', '?')}")
    return _png(fig, canvas)


def comparison_png(runs: dict[str, dict[str, Any]], metric: str = "recall@20") -> bytes:
    """Valid `metric` per epoch of several runs (name -> summary), one labelled line each."""
    fig, canvas = _figure(7, 4)
    ax = fig.subplots()
    for name, summary in runs.items():
        epochs, values = _series(summary.get("history") or [], f"valid/{metric}")
        ax.plot(epochs, values, label=name)
    ax.set(xlabel="epoch", ylabel=f"valid {metric}", title=f"valid {metric} per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig, canvas)


def run_plots(summary: dict[str, Any], metric: str = "recall@20") -> dict[str, bytes]:
    """Every figure the summary has data for: file name -> PNG bytes."""
    drawn = {CURVES: curves_png(summary, metric), AT_K: metrics_at_k_png(summary), CODE_USAGE: code_usage_png(summary)}
    return {name: png for name, png in drawn.items() if png is not None}


def write_bytes_atomically(url: str, data: bytes, storage_options: dict | None = None) -> None:
    """Write `data` to `url` (path or fsspec URL) under a temporary name, then rename it into place."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)


def write_run_plots(summary: dict[str, Any], run_dir: str, storage_options: dict | None = None,
                    metric: str = "recall@20") -> list[str]:
    """Write every available figure into `run_dir`; returns the file names written (in TITLES order)."""
    pngs = run_plots(summary, metric)
    for name, png in pngs.items():
        write_bytes_atomically(f"{run_dir.rstrip('/')}/{name}", png, storage_options)
    return list(pngs)
