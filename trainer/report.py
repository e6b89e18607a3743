"""Compare finished runs side by side: `python -m trainer.report RUN_DIR [RUN_DIR ...]`.

Reads each run directory's `metrics.json` (written by trainer/main.py; any fsspec URL) and
prints one markdown table: test figures of the best-valid epoch, the stricter valid-masked
variant's Recall@20, and where the run stopped. docs/RESULTS.md tables are made with it:

    python -m trainer.report runs/a runs/b --published docs/published.yaml \\
        --plot docs/img/valid.png --markdown-section tiktok --write docs/RESULTS.md

`--published` appends literature figures (a YAML list, e.g. docs/published.yaml) for the
datasets of the compared runs, labelled "published" with their selection protocol, so a reader
never mistakes them for measurements. `--plot` draws every run's valid Recall@20 per epoch.
`--markdown-section NAME --write FILE` replaces the table between `<!-- begin NAME -->` and
`<!-- end NAME -->` in FILE (appending the block if absent), so a doc is regenerated from run
directories rather than edited by hand; benchmarks/record.py uses the same `replace_section`.
`--group-seeds` prints one row per group of runs whose names differ only in a `_s<seed>` suffix
(runs/x_s0, runs/x_s1, ... -> x), each figure as mean ± sample std (n - 1) over the group's seeds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from typing import Any

import fsspec
import yaml

COLUMNS = [("recall@10", "R@10"), ("recall@20", "R@20"), ("ndcg@10", "N@10"), ("ndcg@20", "N@20")]
PROTOCOLS = {"V": "test at the best-valid epoch", "T": "best epoch chosen on test (optimistic)", "?": "not stated"}
PUBLISHED_KEYS = {"model", "data", "protocol", "source"}
SEED_SUFFIX = re.compile(r"_s(\d+)$")


def load_run(run_dir: str) -> dict:
    path = f"{run_dir.rstrip('/')}/metrics.json"
    try:
        with fsspec.open(path, "r") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"error: {path} not found (is {run_dir} a finished run directory?)") from None
    except json.JSONDecodeError as err:
        raise SystemExit(f"error: {path} is not valid JSON ({err})") from None


def run_name(run_dir: str) -> str:
    return run_dir.rstrip("/").rsplit("/", 1)[-1]


def data_name(metrics: dict) -> str:
    return metrics["config"]["data"]["url"].rstrip("/").rsplit("/", 1)[-1]


def seed_group(name: str) -> str:
    """`name` without its `_s<seed>` suffix: tiktok_causal_s2 -> tiktok_causal (unchanged without one)."""
    return SEED_SUFFIX.sub("", name)


def by_seed_group(results: list[Any]) -> dict[str, list[Any]]:
    """Results (anything with a `.name`) by seed group, in first-seen order: the report CLIs' --group-seeds."""
    groups: dict[str, list[Any]] = {}
    for r in results:
        groups.setdefault(seed_group(r.name), []).append(r)
    return groups


def load_published(path: str) -> list[dict[str, Any]]:
    """Rows of a published-figures YAML (`rows:` list of model, data, protocol, source, metric keys)."""
    try:
        with fsspec.open(path, "r") as f:
            raw = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise SystemExit(f"error: {path} not found") from None
    rows = raw.get("rows") if isinstance(raw, dict) else None
    if not isinstance(rows, list):
        raise SystemExit(f"error: {path}: expected a mapping with a 'rows' list")
    for i, row in enumerate(rows):
        missing = PUBLISHED_KEYS - set(row) if isinstance(row, dict) else PUBLISHED_KEYS
        if missing:
            raise SystemExit(f"error: {path}: row {i} lacks {', '.join(sorted(missing))}")
        if str(row["protocol"]) not in PROTOCOLS:
            raise SystemExit(f"error: {path}: row {i} protocol {row['protocol']!r} is not one of {list(PROTOCOLS)}")
    return rows


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


def comparison_table(run_dirs: list[str], published: list[dict[str, Any]] | None = None) -> str:
    """The runs' rows, then the published rows whose `data` is one of the runs' datasets."""
    head = "| run | model | data | seed | best epoch | " + " | ".join(c for _, c in COLUMNS) \
        + " | R@20 (valid masked) | valid R@20 | test users |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    datasets = []
    for run_dir in run_dirs:
        m = load_run(run_dir)
        cfg, test = m["config"], m["best_test"]
        datasets.append(data_name(m))
        cells = [run_name(run_dir), cfg["model"]["name"], data_name(m), str(cfg["run"]["seed"]),
                 f"{m['best_epoch']} / {m['epoch']}"]
        cells += [f"{test[key]:.4f}" for key, _ in COLUMNS]
        cells += [f"{m['best_test_valid_masked']['recall@20']:.4f}", f"{m['best_valid']['recall@20']:.4f}",
                  str(test.get("num_users", "?")) + (" (sampled)" if "sampled_users" in test else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + _published_lines(published, datasets))


def _published_lines(published: list[dict[str, Any]] | None, datasets: list[str], trailing: int = 3) -> list[str]:
    """Rows (and their footnote) of the published figures on `datasets`, in the runs' table layout
    (`trailing`: the table's columns after the metrics, left empty)."""
    lines = []
    shown = [row for row in published or [] if row["data"] in datasets]
    for row in shown:
        cells = ["*published*", str(row["model"]), str(row["data"]), "—", f"protocol {row['protocol']}"]
        cells += [_number(row.get(key)) for key, _ in COLUMNS] + ["—"] * trailing
        lines.append("| " + " | ".join(cells) + " |")
    if shown:
        sources = sorted({str(row["source"]) for row in shown})
        lines += ["", "*published* rows are not measured here (source: " + "; ".join(sources) + "). Protocol: "
                  + ", ".join(f"{k} = {v}" for k, v in PROTOCOLS.items()) + "."]
    return lines


def _mean_std(values: list[float]) -> str:
    """`mean ± sample std` (n - 1) to 4 decimals; the mean alone for a single value."""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.4f}"
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.4f} ± {std:.4f}"


def grouped_table(run_dirs: list[str], published: list[dict[str, Any]] | None = None) -> str:
    """One row per seed group (names equal once `_s<seed>` is dropped), in order of first appearance:
    the runs' figures as mean ± std over seeds; the same columns as `comparison_table`."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for run_dir in run_dirs:
        groups.setdefault(seed_group(run_name(run_dir)), []).append((run_dir, load_run(run_dir)))
    head = "| group | model | data | seeds | best epochs | " + " | ".join(c for _, c in COLUMNS) \
        + " | R@20 (valid masked) | valid R@20 | valid N@20 | test users | selected by |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    datasets = []
    for group, runs in groups.items():
        models = {m["config"]["model"]["name"] for _, m in runs}
        data = {data_name(m) for _, m in runs}
        if len(models) > 1 or len(data) > 1:
            raise SystemExit(f"error: seed group {group} mixes models {sorted(models)} / datasets {sorted(data)}: "
                             f"{[run_name(d) for d, _ in runs]}")
        seeds = [m["config"]["run"]["seed"] for _, m in runs]
        if len(set(seeds)) < len(seeds):
            raise SystemExit(f"error: seed group {group} has the same seed twice: "
                             f"{[(run_name(d), s) for (d, _), s in zip(runs, seeds)]}")
        datasets += sorted(data)
        users = sorted({str(m["best_test"].get("num_users", "?")) + (" (sampled)" if "sampled_users" in m["best_test"] else "")
                        for _, m in runs})
        cells = [group, models.pop(), data.pop(), ", ".join(map(str, seeds)),
                 ", ".join(str(m["best_epoch"]) for _, m in runs)]
        cells += [_mean_std([m["best_test"][key] for _, m in runs]) for key, _ in COLUMNS]
        cells += [_mean_std([m["best_test_valid_masked"]["recall@20"] for _, m in runs]),
                  _mean_std([m["best_valid"]["recall@20"] for _, m in runs]),
                  # NDCG@20 at the chosen epoch: the second metric a valid-only rule may read.
                  _mean_std([m["best_valid"]["ndcg@20"] for _, m in runs]), " / ".join(users)]
        # What chose each run's epoch (eval.select_split / select_metric) and its best value there.
        chosen = sorted({f"{m['config']['eval'].get('select_split', 'valid')} {m['config']['eval']['select_metric']}"
                         for _, m in runs})
        cells.append(" / ".join(chosen) + " " + _mean_std([m["best_score"] for _, m in runs]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += _published_lines(published, datasets, trailing=5)
    lines += ["", "Mean ± sample standard deviation (n - 1) over each group's seeds; test figures at each run's "
              "best epoch by the metric in its `selected by` column."]
    return "\n".join(lines)


def replace_section(text: str, name: str, markdown: str) -> str:
    """`text` with the block between `<!-- begin NAME -->` and `<!-- end NAME -->` set to `markdown`
    (the block is appended when the markers are absent); everything else is left as it was."""
    block = f"<!-- begin {name} -->\n{markdown.strip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + "\n\n" + block + "\n"


def write_section(url: str, name: str, markdown: str, header: str = "", heading: str | None = None) -> None:
    """Replace section `name` of the file at `url` (path or fsspec URL; `header` if it does not exist
    yet; with `heading`, markers the file lacks are appended under `## heading`), writing under a
    temporary name and renaming, so the document is never half written."""
    fs, path = fsspec.core.url_to_fs(url)
    text = fs.cat_file(path).decode() if fs.exists(path) else header
    if heading and f"<!-- begin {name} -->" not in text:
        text = (text.rstrip() + f"\n\n## {heading}\n\n<!-- begin {name} -->\n<!-- end {name} -->\n").lstrip()
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.pipe_file(tmp, replace_section(text, name, markdown).encode())
    fs.mv(tmp, path)


def add_section_args(parser: argparse.ArgumentParser) -> None:
    """`--markdown-section NAME --write FILE`: how every report CLI updates one section of a document."""
    parser.add_argument("--markdown-section", metavar="NAME", help="with --write: the marker name of the section to replace")
    parser.add_argument("--write", metavar="FILE", help="with --markdown-section: the markdown file to update in place")


def print_and_write(args: argparse.Namespace, text: str) -> None:
    """Print a report CLI's markdown, and with `--markdown-section NAME --write FILE` put it in FILE too."""
    print(text)
    if args.write:
        write_section(args.write, args.markdown_section, text)


def check_section_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.markdown_section is None) != (args.write is None):
        parser.error("--markdown-section and --write go together")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--published", metavar="YAML", help="published figures to append (e.g. docs/published.yaml)")
    parser.add_argument("--group-seeds", action="store_true",
                        help="one row per group of runs named alike but for a _s<seed> suffix: mean ± std over seeds")
    parser.add_argument("--plot", metavar="OUT.png", help="write valid Recall@20 per epoch of every run to this PNG")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    table = (grouped_table if args.group_seeds else comparison_table)(
        args.runs, load_published(args.published) if args.published else None)
    print(table)
    if args.plot:
        from trainer.plots import comparison_png, write_bytes_atomically

        write_bytes_atomically(args.plot, comparison_png({run_name(d): load_run(d) for d in args.runs}))
    if args.write:
        write_section(args.write, args.markdown_section, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
