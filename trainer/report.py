"""Compare finished runs side by side: `python -m trainer.report RUN_DIR [RUN_DIR ...]`.

Reads each run directory's `metrics.json` (written by trainer/main.py; any fsspec URL) and
prints one markdown table: test figures of the best-valid epoch, the stricter valid-masked
variant's Recall@20, and where the run stopped. docs/RESULTS.md tables are made with it.
"""

from __future__ import annotations

import argparse
import json
import sys

import fsspec

COLUMNS = [("recall@10", "R@10"), ("recall@20", "R@20"), ("ndcg@10", "N@10"), ("ndcg@20", "N@20")]


def load_run(run_dir: str) -> dict:
    path = f"{run_dir.rstrip('/')}/metrics.json"
    try:
        with fsspec.open(path, "r") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"error: {path} not found (is {run_dir} a finished run directory?)") from None
    except json.JSONDecodeError as err:
        raise SystemExit(f"error: {path} is not valid JSON ({err})") from None


def comparison_table(run_dirs: list[str]) -> str:
    head = "| run | model | data | seed | best epoch | " + " | ".join(c for _, c in COLUMNS) \
        + " | R@20 (valid masked) | valid R@20 | test users |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for run_dir in run_dirs:
        m = load_run(run_dir)
        cfg, test = m["config"], m["best_test"]
        cells = [run_dir.rstrip("/").rsplit("/", 1)[-1], cfg["model"]["name"],
                 cfg["data"]["url"].rstrip("/").rsplit("/", 1)[-1], str(cfg["run"]["seed"]),
                 f"{m['best_epoch']} / {m['epoch']}"]
        cells += [f"{test[key]:.4f}" for key, _ in COLUMNS]
        cells += [f"{m['best_test_valid_masked']['recall@20']:.4f}", f"{m['best_valid']['recall@20']:.4f}",
                  str(test.get("num_users", "?"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    args = parser.parse_args(argv)
    print(comparison_table(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
