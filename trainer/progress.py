"""One progress-bar helper for long loops (training epochs, full-ranking evaluation).

Inside a Ray worker a plain tqdm bar would reach the driver as one log line per refresh; Ray's
``tqdm_ray`` instead sends its state to the driver, which draws one live bar. Outside Ray (a script,
a test, ``python -m trainer.compare``) plain tqdm is the right tool.
"""
from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], *, total: int, desc: str, unit: str = "it") -> Iterator[T]:
    """``iterable`` wrapped in a bar: Ray's driver-side bar in a Ray worker, tqdm elsewhere."""
    import ray

    # A Ray Train worker is an actor; the driver (a script or test that started Ray) is not, and
    # draws its own bars.
    if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        from ray.experimental.tqdm_ray import tqdm as ray_tqdm

        return _closing(ray_tqdm(iterable, total=total, desc=desc, unit=unit))
    from tqdm import tqdm

    # leave=False: an evaluation bar per epoch would otherwise stack up in the terminal.
    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, leave=False))


def _closing(bar) -> Iterator:
    """Iterate a ``tqdm_ray`` bar and close it at the end (or when the loop breaks).

    Ray's ``tqdm_ray.__iter__`` never closes its bar, and its throttled updates may never send the
    final count: the driver then keeps every finished bar alive and redraws all of them on each
    update (an epoch's and each evaluation's bar, for the whole run), which floods a job's log.
    """
    try:
        yield from bar
    finally:
        bar.close()
