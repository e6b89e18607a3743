"""Seconds per training epoch and per full evaluation of the reference toolbox MMRec (FREEDOM, LightGCN, ...).

    .venv/bin/python benchmarks/mmrec_epoch.py --mmrec ~/MMRec [--python PY] [--data ../shared/data/tiktok]
        [--model FREEDOM] [--epochs 5] [--set KEY=VALUE ...] [--no-record]

Gives MMRec's own epoch time on the same data and cores as `benchmarks/epoch_time.py` gives ours. MMRec is not
part of this repository: `git clone https://github.com/enoche/MMRec ~/MMRec`. By default it runs with this repo's
.venv Python (same torch, numpy, scipy, pandas as ours), which has all MMRec needs on this path (torch, numpy,
scipy, pandas, pyyaml, matplotlib, pillow) except lmdb and torchvision. Those two are imported by MMRec's
utils/dataset.py only for its raw-image (end2end) mode, unused with precomputed features; and PyPI's torchvision
is a CUDA build that cannot load next to the CPU torch. So when either cannot be imported the driver puts an inert
stand-in module in its place (any use would raise). MMRec was written for numpy 1.21 / scipy 1.7: where they are
newer the driver restores the two names it uses that were removed since, `numpy.float` (= float, in its metrics)
and `dok_matrix._update` (= the public `update`, when building the graph). The output lists all of these.
--python names another environment (it is checked for the modules MMRec imports, naming any missing).

The checkout is copied into a temporary directory, never changed. There the script adds only its own files: a
dataset YAML for the data folder (MMRec layout: <name>.inter and <modality>_feat.npy, see ../shared/data/README.md),
a data folder of symlinks (MMRec writes its kNN-graph cache next to the data, so never into --data), and a driver
that calls MMRec's `quick_start` as src/main.py does but with a config dict: CPU, `--epochs` epochs, one point of
the model's hyperparameter grid (the first, which MMRec runs first) instead of the whole grid, plus `--set`
overrides. Everything else is MMRec's default (overall.yaml + model YAML: batch 2048, eval batch 4096, 64-d, Adam
1e-3). The driver also wraps Trainer.evaluate to time the test evaluation, which MMRec runs every epoch but does not
time. Threads are left at the machine's default. Per-epoch training and validation seconds are parsed from MMRec's
log lines `epoch N training [time: Xs, ...]` and `epoch N evaluating [time: Xs, ...]`; epoch 0 is dropped
(warm-up) and the medians of the rest are printed and, without --no-record, recorded in docs/BENCHMARKS.md.
TikTok has no text feature: its audio feature fills MMRec's text-feature slot (the output says so).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.record import machine, record_section  # noqa: E402

# What MMRec imports on the FREEDOM / LightGCN path (module -> pip name), checked before anything is copied.
NEEDED = {"torch": "torch==2.13.0", "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "yaml": "pyyaml",
          "matplotlib": "matplotlib", "PIL": "pillow"}

# Runs inside the copied MMRec src/ with the MMRec Python; argv[1] is a JSON of settings written by main().
DRIVER = r'''
import json, logging, sys, time, types
import torch, yaml

class Inert(types.ModuleType):  # stands in for a module MMRec imports but never uses on this path
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        def unavailable(*a, **kw):
            raise RuntimeError("%s.%s: stand-in module (mmrec_epoch benchmark), not installed" % (self.__name__, name))
        return unavailable

stand_ins, compat = [], []  # reported in the output
for top, subs in (("lmdb", ()), ("torchvision", ("transforms", "transforms.functional"))):
    try:
        __import__(top)
    except Exception:  # ImportError, or torchvision's CUDA build failing next to a CPU torch
        for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
            del sys.modules[key]
        for name in (top, *(top + "." + s for s in subs)):
            sys.modules[name] = Inert(name)
        stand_ins.append(top)

import scipy.sparse  # MMRec (scipy 1.7) calls dok_matrix._update, now public as update: graph building only
if not hasattr(scipy.sparse.dok_matrix, "_update"):
    scipy.sparse.dok_matrix._update = scipy.sparse.dok_matrix.update
    compat.append("scipy dok_matrix._update = update")
import numpy  # MMRec's metrics use np.float, the alias of float that numpy 1.24 removed: metrics only
if "float" not in numpy.__dict__:
    numpy.float = float
    compat.append("numpy.float = float")
from common import trainer as mmrec_trainer
from utils.configurator import Config
from utils.quick_start import quick_start

args = json.loads(sys.argv[1])
loader = Config._build_yaml_loader(None)  # MMRec's YAML loader: reads 1e-02 as a float, as its config does
with open("configs/model/%s.yaml" % args["model"]) as f:
    model_cfg = yaml.load(f, Loader=loader) or {}
config = {"gpu_id": 0, "use_gpu": False, "epochs": args["epochs"], "hyper_parameters": []}
for key in model_cfg.get("hyper_parameters", []):  # one grid point, the one MMRec runs first
    value = model_cfg[key]
    config[key] = value[0] if isinstance(value, list) else value
config.update({k: yaml.load(v, Loader=loader) for k, v in args["set"].items()})

evaluate, calls = mmrec_trainer.Trainer.evaluate, [0]
def timed_evaluate(self, eval_data, *a, **kw):  # fit() evaluates valid then test each epoch; MMRec times only valid
    start = time.perf_counter()
    result = evaluate(self, eval_data, *a, **kw)
    split = ("valid", "test")[calls[0] % 2]
    calls[0] += 1
    logging.getLogger().info("mmrec_epoch evaluate %s [time: %.4fs, users: %d]"
                             % (split, time.perf_counter() - start, len(eval_data.get_eval_users())))
    return result
mmrec_trainer.Trainer.evaluate = timed_evaluate

print("MMREC_EPOCH_SETTINGS " + json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                             "stand_ins": stand_ins, "compat": compat}), flush=True)
quick_start(model=args["model"], dataset=args["dataset"], config_dict=config, save_model=False)
'''

TRAIN = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s")
VALID = re.compile(r"epoch (\d+) evaluating \[time: ([\d.]+)s")
EVAL = re.compile(r"mmrec_epoch evaluate (valid|test) \[time: ([\d.]+)s, users: (\d+)\]")
CONFIG = re.compile(r"^(\w+)=(.*)$")  # MMRec logs its final config one `key=value` a line
SHOWN = ("embedding_size", "feat_embed_dim", "n_layers", "n_ui_layers", "n_mm_layers", "knn_k", "mm_image_weight",
         "lambda_coeff", "dropout", "reg_weight", "learner", "learning_rate", "train_batch_size", "eval_batch_size")


def check_python(python: str) -> None:
    """Fail early, naming what MMRec's Python lacks and how to install it."""
    code = ("import importlib.util, json; print(json.dumps([m for m in %r if importlib.util.find_spec(m) is None]))"
            % list(NEEDED))
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"cannot run --python {python}: {err}")
    missing = json.loads(out.strip().splitlines()[-1])
    if missing:
        pips = " ".join(NEEDED[m] for m in missing)
        sys.exit(f"{python} lacks module(s) MMRec imports: {', '.join(missing)}. Install them there, e.g.\n"
                 f"    {python} -m pip install {pips}\n"
                 "(or, for this repo's .venv, ask for them in pyproject.toml rather than installing by hand).")


def prepare(mmrec: Path, data: Path, work: Path) -> tuple[Path, str, list[str]]:
    """Copy MMRec into work/, add a data folder of symlinks and a dataset YAML; return src dir, dataset, notes."""
    if not (mmrec / "src" / "main.py").is_file() or not (mmrec / "src" / "common" / "trainer.py").is_file():
        sys.exit(f"{mmrec} is not an MMRec checkout (no src/main.py, src/common/trainer.py)")
    name = data.name
    if not (data / f"{name}.inter").is_file():
        sys.exit(f"{data} has no {name}.inter (MMRec layout expected, see ../shared/data/README.md)")
    src = work / "MMRec" / "src"
    shutil.copytree(mmrec, work / "MMRec", ignore=shutil.ignore_patterns(".git", "log", "saved", "recommend_topk"))
    folder = work / "data" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.inter").symlink_to((data / f"{name}.inter").resolve())
    # MMRec has two feature slots, vision and text; a folder without text_feat.npy lends its audio feature.
    notes = []
    slots = {"image_feat.npy": ("image_feat.npy",), "text_feat.npy": ("text_feat.npy", "audio_feat.npy")}
    for slot, candidates in slots.items():
        found = next((c for c in candidates if (data / c).is_file()), None)
        if found:
            (folder / slot).symlink_to((data / found).resolve())
            notes.append(f"{slot.split('_')[0]} slot = {found}")
    # Same keys as MMRec's own dataset YAMLs (configs/dataset/baby.yaml); ours, so always written.
    (src / "configs" / "dataset" / f"{name}.yaml").write_text(
        "USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\nTIME_FIELD: timestamp\nfilter_out_cod_start_users: True\n"
        f"inter_file_name: '{name}.inter'\nvision_feature_file: 'image_feat.npy'\ntext_feature_file: 'text_feat.npy'\n"
        f"user_graph_dict_file: 'user_graph_dict.npy'\nfield_separator: \"\\t\"\ndata_path: '{work / 'data'}/'\n")
    (src / "mmrec_epoch_driver.py").write_text(DRIVER)
    return src, name, notes


def run(python: str, src: Path, settings: dict, log: Path) -> list[str]:
    """Run MMRec; echo its epoch lines as they come, keep the whole output in log; fail with its tail."""
    lines = []
    with subprocess.Popen([python, "mmrec_epoch_driver.py", json.dumps(settings)], cwd=src, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc, log.open("w") as out:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            lines.append(line.rstrip("\n"))
            if TRAIN.search(line) or VALID.search(line) or EVAL.search(line):
                print(line.rstrip(), flush=True)
    if proc.returncode != 0:
        print("\n".join(lines[-40:]), file=sys.stderr)
        sys.exit(f"MMRec failed (exit {proc.returncode})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mmrec", required=True, type=Path, help="an MMRec checkout (git clone of enoche/MMRec)")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                        help="Python to run MMRec with (torch, numpy, scipy, pandas, pyyaml, matplotlib, pillow); "
                        "default this repo's")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tiktok")
    parser.add_argument("--model", default="FREEDOM", help="MMRec model name, e.g. FREEDOM, LightGCN")
    parser.add_argument("--epochs", type=int, default=5, help="epochs run; the first is dropped (warm-up)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="MMRec config override (YAML value), e.g. --set n_layers=2")
    parser.add_argument("--no-record", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first is dropped)")
    if any("=" not in kv for kv in args.set):
        parser.error("--set takes KEY=VALUE")
    overrides = dict(kv.split("=", 1) for kv in args.set)
    mmrec = args.mmrec.expanduser().resolve()
    check_python(args.python)
    git = subprocess.run(["git", "-C", str(mmrec), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 and (mmrec / ".git").exists() else "unknown"
    with tempfile.TemporaryDirectory(prefix="mmrec_epoch-") as tmp:
        src, dataset, notes = prepare(mmrec, args.data.expanduser().resolve(), Path(tmp))
        settings = {"model": args.model, "dataset": dataset, "epochs": args.epochs, "set": overrides}
        lines = run(args.python, src, settings, Path(tmp) / "mmrec.log")

    info = json.loads(next(line.split(" ", 1)[1] for line in lines if line.startswith("MMREC_EPOCH_SETTINGS ")))
    cfg = dict(m.groups() for line in lines if (m := CONFIG.match(line)))
    train = {int(m[1]): float(m[2]) for line in lines if (m := TRAIN.search(line))}
    valid = {int(m[1]): float(m[2]) for line in lines if (m := VALID.search(line))}
    evals = [(m[1], float(m[2]), int(m[3])) for line in lines if (m := EVAL.search(line))]
    both = {e: evals[2 * e][1] + evals[2 * e + 1][1] for e in range(len(evals) // 2)}  # valid + test, per epoch
    users = {split: n for split, _, n in evals}
    timed = [e for e in sorted(train) if e > 0 and e in valid and e in both]
    if not timed:
        sys.exit(f"no timed epoch parsed from MMRec's output (epochs seen: {sorted(train)})")
    train_s = statistics.median(train[e] for e in timed)
    valid_s = statistics.median(valid[e] for e in timed)
    both_s = statistics.median(both[e] for e in timed)

    data = dataset  # the --data folder's name, which is also MMRec's dataset name
    hyper = ", ".join(f"{k}={cfg[k]}" for k in SHOWN if k in cfg)
    features = "; ".join(notes) if cfg.get("is_multimodal_model") == "True" else "none (ID-only model)"
    row = (f"| MMRec {args.model} | {data} | {len(timed)} | {train_s:.2f} | {valid_s:.2f} | {both_s:.2f} | "
           f"{cfg.get('train_batch_size', '?')} | {info['threads']} |")
    command = " ".join([".venv/bin/python benchmarks/mmrec_epoch.py", *map(shlex.quote, sys.argv[1:])])
    table = "\n".join([
        f"## MMRec epoch and evaluation time ({args.model}, {data})",
        "",
        f"`{command}`",
        f"on {machine()}. MMRec commit {commit}, torch {info['torch']} on CPU, {info['threads']} torch threads",
        f"(machine default). Median over MMRec epochs 1..{max(timed)} (epoch 0 dropped as warm-up), times from",
        "MMRec's own log lines. Training = its `training [time]`: pre_epoch_processing (FREEDOM: edge sampling) and",
        "all batches. Valid = its `evaluating [time]`: full ranking of all valid users"
        f" ({users.get('valid', '?')}). Valid + test adds the test evaluation ({users.get('test', '?')} users)",
        "that MMRec also runs every epoch, timed by the benchmark's wrapper of Trainer.evaluate.",
        f"Settings: MMRec's defaults, the first point of the model's grid{', --set ' if overrides else ''}"
        f"{' '.join(args.set)}: {hyper}. Features: {features or 'none'}.",
        f"Inert stand-ins for imports unused here: {', '.join(info['stand_ins']) or 'none'}; compatibility aliases"
        f" for MMRec's older numpy/scipy: {', '.join(info['compat']) or 'none'}.",
        "",
        "| model | data | epochs timed | s / training epoch | s / valid evaluation | s / valid + test evaluation"
        " | batch | threads |",
        "|---|---|---|---|---|---|---|---|",
        row,
    ])
    print(table)
    if not args.no_record:
        record_section(f"mmrec_epoch-{args.model}-{data}", table)


if __name__ == "__main__":
    main()
