"""trainer.progress: the bar passes every item through, outside a Ray worker as plain tqdm."""

from __future__ import annotations

from trainer.progress import progress_bar


def test_plain_tqdm_outside_a_ray_worker(capsys) -> None:
    # Also when an earlier test left Ray initialised in this process: the driver is not a worker.
    assert list(progress_bar(range(5), total=5, desc="counting", unit="x")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "counting" in err and "0/5 " in err  # leave=False clears the finished bar


def test_ray_bar_is_closed_when_the_loop_ends_or_breaks(monkeypatch) -> None:
    # Ray's tqdm_ray does not close itself after iterating: the helper must, or the driver keeps
    # (and keeps redrawing) every finished bar.
    import ray
    import ray.experimental.tqdm_ray as tqdm_ray

    closed: list[str] = []

    class FakeBar:
        def __init__(self, iterable, total, desc, unit):
            self.iterable, self.desc = iterable, desc

        def __iter__(self):
            yield from self.iterable

        def close(self):
            closed.append(self.desc)

    class Context:
        def get_actor_id(self):
            return "an-actor"

    monkeypatch.setattr(tqdm_ray, "tqdm", FakeBar)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: Context())
    assert list(progress_bar(range(3), total=3, desc="full", unit="x")) == [0, 1, 2]
    for item in progress_bar(range(3), total=3, desc="broken", unit="x"):
        break
    import gc

    gc.collect()  # the abandoned generator runs its finally on collection
    assert closed == ["full", "broken"]
