"""Build, verify and inspect canonical datasets.

    python -m data_loaders.prepare --from mmrec --src DIR --to URL [--name N] [--overwrite]
    python -m data_loaders.prepare --from synthetic [simulator options] --to URL [--overwrite]
    python -m data_loaders.prepare verify URL     re-check every file's size and sha256
    python -m data_loaders.prepare info URL       print the manifest summary

URL is any fsspec URL (a local path, s3://bucket/prefix, memory://...); --storage-options takes
a JSON object passed to fsspec (e.g. s3 credentials or endpoint). A bad dataset or bad input
exits with code 2 and a message naming the file, row, column and value; so does a store that
cannot be reached (after retries with back-off, data_loaders/storage.py).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from data_loaders.format import DatasetError, Manifest
from data_loaders.storage import StorageError
from data_loaders.stream import open_dataset

PROG = "python -m data_loaders.prepare"
SOURCES = ("mmrec", "synthetic")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in ("verify", "info"):
            return _inspect(argv)
        return _build(argv)
    except (DatasetError, StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _build(argv: list[str]) -> int:
    # The source decides which options exist, so it is parsed first; the simulator's module is
    # only imported when asked for.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--from", dest="source", choices=SOURCES)
    source = pre.parse_known_args(argv)[0].source

    parser = _parser()
    parser.add_argument("--from", dest="source", choices=SOURCES, required=True,
                        help="input layout")
    parser.add_argument("--to", required=True, metavar="URL", help="where to write the dataset")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset at URL (only once the new one is complete)")
    synthetic = None
    if source == "mmrec":
        parser.add_argument("--src", required=True, metavar="DIR",
                            help="folder with <name>.inter and <modality>_feat.npy files")
        parser.add_argument("--name", help="dataset name = <name>.inter (default: the only .inter)")
    elif source == "synthetic":
        try:
            synthetic = importlib.import_module("data_loaders.importers.synthetic")
        except ModuleNotFoundError as e:
            parser.error(f"the synthetic importer is not available ({e})")
        synthetic.add_cli_arguments(parser)
    args = parser.parse_args(argv)

    if synthetic is not None:
        manifest = synthetic.run_from_args(args, args.to, args.overwrite)
    else:
        from data_loaders.importers.mmrec import import_mmrec

        manifest = import_mmrec(args.src, args.to, name=args.name, overwrite=args.overwrite,
                                storage_options=args.storage_options, progress=True)
    print(summary(manifest, args.to))
    return 0


def _inspect(argv: list[str]) -> int:
    parser = _parser()
    parser.add_argument("command", choices=("verify", "info"))
    parser.add_argument("url", metavar="URL")
    args = parser.parse_args(argv)
    if args.command == "verify":
        ds = open_dataset(args.url, storage_options=args.storage_options, verify=False)
        checked = ds.verify()
        print(summary(ds.manifest, args.url))
        print(f"OK: {checked} files match their size and sha256")
    else:
        ds = open_dataset(args.url, storage_options=args.storage_options, verify=False)
        m = ds.manifest
        print(summary(m, args.url))
        print(f"  files: {len(m.files)} ({sum(f.bytes for f in m.files.values()):,} bytes)"
              f"  truth: {', '.join(m.truth) or '-'}")
        print(f"  created: {m.created_at}  format: {m.format_version}  source: {json.dumps(m.source)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage-options", type=_json_object, default=None, metavar="JSON",
                        help="fsspec storage options as a JSON object")
    return parser


def _json_object(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def summary(manifest: Manifest, url: str) -> str:
    """A few lines: counts, splits and modalities."""
    splits = " / ".join(f"{name} {count:,}" for name, count in manifest.splits.items() if count)
    modalities = ", ".join(f"{m} {d}-d" for m, d in manifest.modalities.items()) or "none"
    return (f"dataset {manifest.name!r} at {url}\n"
            f"  users {manifest.num_users:,}  items {manifest.num_items:,}  "
            f"interactions {manifest.num_interactions:,}\n"
            f"  splits: {splits}\n"
            f"  modalities: {modalities}")


if __name__ == "__main__":
    sys.exit(main())
