"""Sparse adjacency @ dense embeddings, forward and backward: torch's sparse layouts against SparseOperator.

    .venv/bin/python benchmarks/spmm.py [--data data/tiktok] [--dim 64] [--threads 2] [--repeats 30]

The full-graph models multiply the normalised (U+I) x (U+I) training adjacency by [U+I, d]
embeddings several times per step, forward and backward (models/sparse_ops.py says why). This
times exactly that product on a real dataset's adjacency (`data_loaders.graph.lightgcn_adjacency`)
for torch's COO and CSR tensors and for `models.sparse_ops.SparseOperator`: the forward alone
(no gradient) and forward + backward (gradient with respect to the dense input), median of
`--repeats` after 3 warm-up calls. Checks that all three agree, prints a table and records it in
docs/BENCHMARKS.md (section spmm-<data name>). Needs `make data-real` for the default data.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.record import machine, record_section  # noqa: E402
from data_loaders.format import Split  # noqa: E402
from data_loaders.graph import interaction_csrs, lightgcn_adjacency  # noqa: E402
from data_loaders.stream import open_dataset  # noqa: E402
from models.sparse_ops import SparseOperator  # noqa: E402


def _median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/tiktok")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    url = args.data if Path(args.data).is_absolute() else str(ROOT / args.data)
    train = interaction_csrs(open_dataset(url), (Split.TRAIN,))[Split.TRAIN]
    coo = lightgcn_adjacency(train)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        csr = coo.to_sparse_csr()
    kinds = {"torch COO (`torch.sparse.mm`)": lambda x: torch.sparse.mm(coo, x),
             "torch CSR (`csr @ x`)": lambda x: csr @ x,
             "SparseOperator (embedding_bag)": (lambda op: (lambda x: op @ x))(SparseOperator(coo))}
    x = torch.randn(coo.shape[0], args.dim, generator=torch.Generator().manual_seed(0))
    reference = kinds["torch COO (`torch.sparse.mm`)"](x)
    rows = []
    for name, product in kinds.items():
        torch.testing.assert_close(product(x), reference, rtol=1e-4, atol=1e-5)
        leaf = x.clone().requires_grad_()
        grad = torch.randn_like(x)

        def forward_backward() -> None:
            torch.autograd.grad(product(leaf), leaf, grad)

        with torch.no_grad():
            fwd = _median_ms(lambda: product(x), args.repeats)
        both = _median_ms(forward_backward, args.repeats)
        rows.append(f"| {name} | {fwd:.2f} | {both:.2f} |")
        print(rows[-1], flush=True)
    name = Path(args.data).name
    table = "\n".join([
        f"## Sparse adjacency @ dense, forward and backward ({name})",
        "",
        f"`.venv/bin/python benchmarks/spmm.py --data {args.data} --dim {args.dim} --threads {args.threads} "
        f"--repeats {args.repeats}`",
        f"on {machine()}. The normalised training adjacency of {name} ({coo.shape[0]:,} x {coo.shape[0]:,}, "
        f"{coo._nnz():,} entries) times a [{coo.shape[0]:,} x {args.dim}] dense matrix; {args.threads} torch "
        f"thread(s); median ms of {args.repeats} calls after 3 warm-up; forward + backward = the product and "
        "the gradient with respect to the dense input (what a training step needs per propagation layer). "
        "All three give the same product (checked).",
        "",
        "| implementation | forward ms | forward + backward ms |",
        "|---|---|---|",
        *rows,
    ])
    print(table)
    if not args.no_record:
        record_section(f"spmm-{name}", table)


if __name__ == "__main__":
    main()
