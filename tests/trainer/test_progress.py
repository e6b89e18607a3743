"""trainer.progress: the bar passes every item through, outside Ray as plain tqdm."""

from __future__ import annotations

import ray

from trainer.progress import progress_bar


def test_plain_tqdm_outside_ray(capsys) -> None:
    assert not ray.is_initialized()
    assert list(progress_bar(range(5), total=5, desc="counting", unit="x")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "counting" in err and "0/5 " in err  # leave=False clears the finished bar
