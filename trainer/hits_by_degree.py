"""Which held-out items a model reaches, by how popular they were in training.

    python -m trainer.hits_by_degree RUN_DIR [RUN_DIR ...] [--split valid|test] [--k 20]
        [--degree-bands 0 1 5 20] [--group-seeds] [--markdown-section NAME --write FILE]

Recall@K pools every held-out interaction; this tool splits it by the held-out item's training
degree (its number of training interactions), in bands [b_j, b_{j+1}) and a last band [b_last, ∞).
On TikTok about half of the held-out items were seen fewer than 20 times in training and 449 test
items never: a model that only ranks the head well has a ceiling, and content features are the
only way to the never-seen ones. For each run (or seed group) and band: how many held-out
interactions fall in it, and the share of them in the user's top K, so the columns add up to
Recall@K's numerator (hits) over its denominator (interactions; Recall@K itself averages per
user, which equals this pooled share only where each user holds out one item, as on TikTok).

Each run's best checkpoint is restored on CPU (trainer/restore.py) and ranked exactly as the
evaluator ranks it (training items masked; valid items not masked for test, the primary
protocol). Reading test is for reporting only: choose on valid (../shared/docs/anchors.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from data_loaders.format import Split
from data_loaders.graph import CSR
from trainer.evaluate import topk_items
from trainer.hit_ranks import SPLITS  # the same split names as trainer.hit_ranks
from trainer.report import add_section_args, by_seed_group, check_section_args, run_name, print_and_write
from trainer.restore import RestoreError, restore_run
from trainer.ranking import ranking_embeddings

DEFAULT_BANDS = (0, 1, 5, 20)


@dataclass
class DegreeHits:
    """One run's (or seed group's mean) held-out interactions and hits per degree band."""

    name: str
    held: np.ndarray   # held-out interactions per band
    hits: np.ndarray   # of them in the user's top K


def check_bands(bands: tuple[int, ...]) -> None:
    if len(bands) < 1 or list(bands) != sorted(set(bands)) or bands[0] != 0:
        raise ValueError(f"--degree-bands must be increasing degrees starting at 0, got {list(bands)}")


def band_of(degree: np.ndarray, bands: tuple[int, ...]) -> np.ndarray:
    """Index j of the band [b_j, b_{j+1}) holding each degree (the last band is open)."""
    return np.searchsorted(np.asarray(bands), degree, side="right") - 1


def band_labels(bands: tuple[int, ...]) -> list[str]:
    """Column labels of the bands [b_j, b_{j+1}) and the open last band, e.g. "1-4", "5", ">= 20"."""
    return [f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in zip(bands[:-1], bands[1:])] + [f">= {bands[-1]}"]


def degree_hits(top: np.ndarray, users: np.ndarray, held_out: CSR, degree: np.ndarray, name: str,
                bands: tuple[int, ...] = DEFAULT_BANDS) -> DegreeHits:
    """Counts for `top[r]`, the ranked items of `users[r]` (-1 = no item), against their held-out items."""
    check_bands(bands)
    held = np.zeros(len(bands), dtype=np.int64)
    hits = np.zeros(len(bands), dtype=np.int64)
    for r, u in enumerate(users):
        items = held_out.indices[held_out.indptr[u]:held_out.indptr[u + 1]]
        b = band_of(degree[items], bands)
        hit = np.isin(items, top[r])
        np.add.at(held, b, 1)
        np.add.at(hits, b[hit], 1)
    return DegreeHits(name, held, hits)


def run_degree_hits(run_dir: str, split: str, k: int, bands: tuple[int, ...]) -> DegreeHits:
    run = restore_run(run_dir.rstrip("/"))
    user_emb, item_emb = ranking_embeddings(run.model, run.splits[Split.TRAIN], run.cfg.eval.popularity_offset)
    train = run.splits[Split.TRAIN]  # users x items
    held_out = run.splits[SPLITS[split]]
    users = np.nonzero(np.diff(held_out.indptr))[0]
    if len(users) == 0:
        raise ValueError(f"{run_dir}: no user has a held-out item in the {split} split")
    _, top = topk_items(user_emb, item_emb, users, k, [train])
    degree = np.bincount(train.indices, minlength=item_emb.shape[0])
    return degree_hits(top.cpu().numpy(), users, held_out, degree, run_name(run_dir), bands)


def group(results: list[DegreeHits]) -> list[DegreeHits]:
    """Seed groups (names equal once `_s<seed>` is dropped): the mean counts over the group."""
    return [DegreeHits(f"{g} (n={len(rs)})", np.mean([r.held for r in rs], axis=0), np.mean([r.hits for r in rs], axis=0))
            for g, rs in by_seed_group(results).items()]


def render(results: list[DegreeHits], split: str, k: int, bands: tuple[int, ...]) -> str:
    labels = band_labels(bands)
    head = "| run | " + " | ".join(f"degree {x}: hits / held out" for x in labels) + " | all: hits / held out |"
    lines = [f"Held-out **{split}** interactions by the item's training degree, and how many of them are in the"
             f" user's top {k} (training items masked; share in brackets).", "", head, "|" + "---|" * (len(labels) + 2)]

    def cell(hit: float, held: float) -> str:
        share = hit / held if held else 0.0
        return f"{hit:g} / {held:g} ({share:.3f})"

    for r in results:
        cells = [cell(round(h, 1), round(n, 1)) for h, n in zip(r.hits, r.held)]
        lines.append("| " + " | ".join([r.name, *cells, cell(round(r.hits.sum(), 1), round(r.held.sum(), 1))]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--split", choices=sorted(SPLITS), default="valid")
    parser.add_argument("--k", type=int, default=20, help="list length K (default %(default)s)")
    parser.add_argument("--degree-bands", nargs="+", type=int, default=list(DEFAULT_BANDS),
                        help="band edges: held-out items of training degree [b_j, b_{j+1}) (default %(default)s)")
    parser.add_argument("--group-seeds", action="store_true", help="one row per seed group (mean over seeds)")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    bands = tuple(args.degree_bands)
    if args.k < 1:
        parser.error(f"--k must be positive, got {args.k}")
    try:
        check_bands(bands)
        results = [run_degree_hits(d, args.split, args.k, bands) for d in args.runs]
    except (RestoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = render(group(results) if args.group_seeds else results, args.split, args.k, bands)
    print_and_write(args, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
