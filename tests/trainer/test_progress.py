"""trainer.progress: the bar passes every item through, outside a Ray worker as plain tqdm."""

from __future__ import annotations

from trainer.progress import progress_bar


def test_plain_tqdm_outside_a_ray_worker(capsys) -> None:
    # Also when an earlier test left Ray initialised in this process: the driver is not a worker.
    assert list(progress_bar(range(5), total=5, desc="counting", unit="x")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "counting" in err and "0/5 " in err  # leave=False clears the finished bar
