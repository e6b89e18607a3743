"""The two figures of `python -m trainer.explain --codes`.

code_usage.png: per codebook level, each code's share of the items assigned to it now next to the
prior P(c) the back-door adjustment uses, so a code the prior weights but no item uses (or the
reverse) stands out. items_by_code.png: every item's confounder estimate ẑ_i projected on its first
two principal components (torch.pca_lowrank; no sklearn), coloured by coarse code, with the coarse
code vectors projected the same way.

matplotlib is imported lazily and used through its object API on the Agg canvas (no pyplot state,
no display); files are written under a temporary name and renamed (trainer/plots.py).
"""

from __future__ import annotations

import io
from typing import Any

import torch

from trainer.plots import write_bytes_atomically

CODE_USAGE, ITEMS_BY_CODE = "code_usage.png", "items_by_code.png"


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, FigureCanvasAgg(fig)


def _png(canvas: Any) -> bytes:
    buf = io.BytesIO()
    canvas.print_png(buf)
    return buf.getvalue()


def code_usage_png(report: dict[str, Any]) -> bytes:
    """Grouped bars per level: share of items assigned to each code, and its prior."""
    levels = report["levels"]
    fig, canvas = _figure(max(5.0, 0.25 * max(lv["num_codes"] for lv in levels)), 3.2 * len(levels))
    axes = fig.subplots(len(levels), 1, squeeze=False)[:, 0]
    total = max(report["num_items"], 1)
    for ax, level in zip(axes, levels):
        codes = level["codes"]
        x = torch.arange(len(codes)).double()
        ax.bar((x - 0.2).tolist(), [c["size"] / total for c in codes], width=0.4, label="share of items (now)",
               color="tab:purple")
        ax.bar((x + 0.2).tolist(), [c["prior"] for c in codes], width=0.4, label="prior P(c)", color="tab:orange")
        used = sum(c["size"] > 0 for c in codes)
        ax.set(xlabel="code", ylabel="fraction", title=f"{level['level']}: {used}/{len(codes)} codes hold items")
        if len(codes) <= 40:
            ax.set_xticks(x.tolist())
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle(f"codebook at the checkpoint after epoch {report.get('checkpoint_epoch', '?')}")
    return _png(canvas)


def pca_2d(x: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """x [N, d] (and `others` [M, d], with x's mean and axes) on x's first two principal components."""
    x = x.double()
    mean = x.mean(0, keepdim=True)
    if x.shape[1] < 2 or x.shape[0] < 2:  # nothing to project onto: pad with zeros
        pad = lambda t: torch.nn.functional.pad(t.double() - mean, (0, max(0, 2 - t.shape[1])))[:, :2]  # noqa: E731
        return [pad(x), *(pad(o) for o in others)]
    with torch.random.fork_rng():  # pca_lowrank is randomised: same figure per run, caller's RNG untouched
        torch.manual_seed(0)
        _, _, v = torch.pca_lowrank(x, q=2, center=True)
    return [(x - mean) @ v, *((o.double() - mean) @ v for o in others)]


def items_by_code_png(confounder: torch.Tensor, coarse: torch.Tensor, coarse_codes: torch.Tensor) -> bytes:
    """Items' ẑ on two principal components, one colour per coarse code; code vectors as labelled crosses."""
    from matplotlib import colormaps

    points, centres = pca_2d(confounder.detach().cpu(), coarse_codes.detach().cpu())
    num_codes, coarse = coarse_codes.shape[0], coarse.cpu()
    cmap = colormaps["tab10" if num_codes <= 10 else "tab20"]
    fig, canvas = _figure(7.5, 5.5)
    ax = fig.subplots()
    for k in range(num_codes):
        mine = coarse == k
        colour = cmap(k % cmap.N)
        if bool(mine.any()):
            ax.scatter(points[mine, 0].tolist(), points[mine, 1].tolist(), s=8, alpha=0.7, color=colour,
                       label=f"code {k} ({int(mine.sum())} items)" if num_codes <= 20 else None)
        ax.scatter([float(centres[k, 0])], [float(centres[k, 1])], marker="X", s=90, color=colour,
                   edgecolors="black", linewidths=0.8)
        ax.annotate(str(k), (float(centres[k, 0]), float(centres[k, 1])), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)
    ax.set(xlabel="PC 1", ylabel="PC 2", title="items' confounder estimate ẑ by coarse code (X: code vectors)")
    if num_codes <= 20:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    ax.grid(alpha=0.3)
    return _png(canvas)


def write_code_plots(report: dict[str, Any], arrays: dict[str, torch.Tensor], out_dir: str) -> list[str]:
    """Write both figures into `out_dir` (path or fsspec URL); returns their paths."""
    out_dir = out_dir.rstrip("/")
    pngs = {CODE_USAGE: code_usage_png(report),
            ITEMS_BY_CODE: items_by_code_png(arrays["confounder"], arrays["coarse"], arrays["coarse_codes"])}
    paths = []
    for name, png in pngs.items():
        write_bytes_atomically(f"{out_dir}/{name}", png)
        paths.append(f"{out_dir}/{name}")
    return paths
