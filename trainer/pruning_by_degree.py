"""Which training edges the causal subgraph keeps, by how popular the edge's item was in training.

    python -m trainer.pruning_by_degree RUN_DIR [RUN_DIR ...] [--epoch N]
        [--degree-bands 1 5 20 50 200] [--group-seeds] [--markdown-section NAME --write FILE]

The front-door's topology reconstruction (docs/MODEL.md §4) keeps each user's best-scored
edges. If the edge score follows item popularity, pruning takes the tail's edges first, and
with `frontdoor.pruned_bpr_weight: 0` those pairs also leave the BPR loss. For each run (or seed
group) and band of item training degree [b_j, b_{j+1}) (the last band open): the training edges
in it and the share the subgraph keeps, read from the kept mask of the run's best checkpoint
(or of the one after `--epoch N`), exactly what that checkpoint's evaluation propagated on.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from data_loaders.format import Split
from trainer.hits_by_degree import band_labels, band_of
from trainer.report import add_section_args, by_seed_group, check_section_args, print_and_write, run_name
from trainer.restore import RestoreError, restore_run

DEFAULT_BANDS = (1, 5, 20, 50, 200)


@dataclass
class KeptByDegree:
    """One run's (or seed group's mean) training edges and kept edges per degree band."""

    name: str
    edges: np.ndarray
    kept: np.ndarray


def kept_by_degree(edge_item: np.ndarray, kept: np.ndarray, degree: np.ndarray, bands: tuple[int, ...],
                   name: str) -> KeptByDegree:
    """Counts per band of the edges' item degrees; bands start at 1 (an edge's item has degree >= 1)."""
    if len(bands) < 1 or list(bands) != sorted(set(bands)) or bands[0] != 1:
        raise ValueError(f"--degree-bands must be increasing degrees starting at 1, got {list(bands)}")
    band = band_of(degree[edge_item], bands)
    edges = np.bincount(band, minlength=len(bands))
    return KeptByDegree(name, edges, np.bincount(band[kept], minlength=len(bands)))


def run_kept_by_degree(run_dir: str, bands: tuple[int, ...], epoch: int | None = None) -> KeptByDegree:
    run = restore_run(run_dir.rstrip("/"), epoch=epoch)
    frontdoor = getattr(run.model, "frontdoor", None)
    if frontdoor is None or not run.cfg.model.causal.frontdoor.enabled:
        raise ValueError(f"{run_dir}: the run's model has no front-door (model.name "
                         f"{run.cfg.model.name!r}), so no causal subgraph to read")
    train = run.splits[Split.TRAIN]
    degree = np.bincount(train.indices, minlength=train.num_cols)
    return kept_by_degree(frontdoor.edge_item.numpy(), frontdoor.kept.numpy(), degree, bands, run_name(run_dir))


def group(results: list[KeptByDegree]) -> list[KeptByDegree]:
    """Seed groups (names equal once `_s<seed>` is dropped): the mean counts over the group."""
    return [KeptByDegree(f"{g} (n={len(rs)})", np.mean([r.edges for r in rs], axis=0),
                         np.mean([r.kept for r in rs], axis=0)) for g, rs in by_seed_group(results).items()]


def render(results: list[KeptByDegree], bands: tuple[int, ...]) -> str:
    labels = band_labels(bands)
    lines = ["Training edges by their item's training degree, and the share the causal subgraph keeps "
             "(`python -m trainer.pruning_by_degree`).", "",
             "| run | " + " | ".join(f"degree {x}: kept / edges" for x in labels) + " | all: kept / edges |",
             "|" + "---|" * (len(labels) + 2)]

    def cell(kept: float, edges: float) -> str:
        return f"{round(kept, 1):g} / {round(edges, 1):g} ({kept / edges if edges else 0.0:.3f})"

    for r in results:
        cells = [cell(k, n) for k, n in zip(r.kept, r.edges)]
        lines.append("| " + " | ".join([r.name, *cells, cell(r.kept.sum(), r.edges.sum())]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--epoch", type=int, help="the checkpoint written after this epoch (default: the best)")
    parser.add_argument("--degree-bands", nargs="+", type=int, default=list(DEFAULT_BANDS),
                        help="band edges: edges whose item has training degree [b_j, b_{j+1}) (default %(default)s)")
    parser.add_argument("--group-seeds", action="store_true", help="one row per seed group (mean over seeds)")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    bands = tuple(args.degree_bands)
    try:
        results = [run_kept_by_degree(d, bands, args.epoch) for d in args.runs]
    except (RestoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_and_write(args, render(group(results) if args.group_seeds else results, bands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
