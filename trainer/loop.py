"""The training loop every Ray Train worker runs (one code path: 1 worker is world size 1).

Per worker: read the dataset, build the model with its TorchRec tables, shard them with
DistributedModelParallel over the process group Ray Train set up (the dense parameters under
DDP or, with `train.dense_engine: deepspeed`, a DeepSpeed ZeRO engine on the same group:
trainer/dense_engine.py), then for each epoch take this rank's slice of every global BPR
batch, step, and every `train.eval_every` epochs
evaluate valid (users split over ranks, sums all-reduced: identical numbers on every rank).
An improvement on the valid select-metric triggers the test evaluation right away, so the
reported test figures are those of the best-valid epoch without reloading anything. Every
evaluation writes a checkpoint; Ray keeps the best-valid one and the latest.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from data_loaders.format import DatasetError, Manifest, Split, split_name
from data_loaders.graph import CSR, interaction_csrs
from data_loaders.sampler import BPRSampler
from data_loaders.stream import open_dataset
from trainer import checkpoint
from trainer.build import build_from_config
from trainer.checkpoint import TrainState
from trainer.config import Config, TrainSection
from trainer.dense_engine import build_stepper
from trainer.evaluate import evaluate, sample_eval_users
from trainer.ranking import popularity_column, with_popularity_offset
from trainer.faults import FaultInjector
from trainer.progress import progress_bar
from trainer.sharding import shard_model
from trainer.tracking import Tracker
from trainer.weight_average import WeightAverage


def _configure_threads(cfg: Config, world_size: int) -> None:
    # Workers on one machine oversubscribe the cores unless each gets its share.
    threads = cfg.scaling.threads_per_worker or max(1, (os.cpu_count() or 1) // world_size)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _all_gather_objects(obj: Any) -> list[Any]:
    """obj of every rank, in rank order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MiB.

    /proc first: getrusage's ru_maxrss survives exec, so it can be the parent's high-water mark.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _mean_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Each value's mean over the ranks, in one all-reduce (every rank passes the same list layout)."""
    if not values or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def next_learning_rate(train: TrainSection, rate: float, bad_evals: int, epoch: int) -> float:
    """The rate after the evaluation of epoch `epoch` (1-based) left `bad_evals` evaluations without improvement.

    `plateau` cuts it at every `lr_decay_patience`-th such evaluation in a row (as torch's
    ReduceLROnPlateau, whose counter restarts after each cut), from epoch `lr_decay_start_epoch`
    on, never below `min_learning_rate`.
    """
    if (train.lr_schedule != "plateau" or epoch < train.lr_decay_start_epoch or bad_evals == 0
            or bad_evals % train.lr_decay_patience):
        return rate
    return max(train.min_learning_rate, rate * train.lr_decay_factor)


def present_splits(cfg: Config, manifest: Manifest) -> tuple[tuple[Split, ...], Split]:
    """(splits to load, the split that selects the epoch) for a dataset's manifest.

    The simulator's UNBIASED_TEST and UNBIASED_VALID splits (docs/SIMULATOR.md) are loaded and
    evaluated whenever the dataset has rows in them. ``eval.select_split: unbiased_valid`` on a
    dataset without that split is an error naming the manifest, not a silent fall-back to valid.
    """
    extra = tuple(s for s in (Split.UNBIASED_TEST, Split.UNBIASED_VALID) if manifest.splits.get(split_name(s), 0) > 0)
    select = Split[cfg.eval.select_split.upper()]
    if select not in (Split.VALID, *extra):
        raise DatasetError(f"eval.select_split is {cfg.eval.select_split!r} but the dataset at {cfg.data.url} has no "
                           "rows in that split (simulator data gets it with --unbiased-valid-per-user N)",
                           file=f"{cfg.data.url.rstrip('/')}/manifest.json", column=f"splits.{cfg.eval.select_split}",
                           value=manifest.splits.get(cfg.eval.select_split, 0))
    return (Split.TRAIN, Split.VALID, Split.TEST, *extra), select


class Evaluator:
    """Valid/test evaluation of the model's current final embeddings."""

    def __init__(self, cfg: Config, splits: dict[Split, CSR], rank: int, world_size: int) -> None:
        self.cfg, self.splits, self.rank, self.world_size = cfg, splits, rank, world_size
        # eval.sample_users > 0: the same seeded sample of each split's users at every evaluation,
        # labelled in the metrics (`sampled_users` of `sampled_from`); identical on every rank.
        self.samples = {s: sample_eval_users(csr, cfg.eval.sample_users, cfg.run.seed) for s, csr in splits.items()
                        if s != Split.TRAIN}
        self.popularity = popularity_column(splits[Split.TRAIN])  # for eval.popularity_offset

    def __call__(self, model: torch.nn.Module, target: Split, mask_valid: bool = False) -> dict[str, float]:
        unbiased = target in (Split.UNBIASED_TEST, Split.UNBIASED_VALID)
        with torch.no_grad():  # unbiased splits are drawn under uniform exposure: rank under do(uniform exposure)
            user_emb, item_emb = model.final_embeddings(uniform_exposure=unbiased)
        if not unbiased:
            user_emb, item_emb = with_popularity_offset(user_emb, item_emb, self.popularity,
                                                        self.cfg.eval.popularity_offset)
        exclude = [self.splits[Split.TRAIN]] + ([self.splits[Split.VALID]] if mask_valid else [])
        if unbiased:  # drawn apart from all of a user's observed items: mask them all
            exclude = [self.splits[s] for s in (Split.TRAIN, Split.VALID, Split.TEST)]
        users, eligible = self.samples[target]
        result = evaluate(user_emb, item_emb, self.splits[target], exclude, ks=tuple(self.cfg.eval.ks), users=users,
                          user_chunk=self.cfg.eval.user_chunk, item_chunk=self.cfg.eval.item_chunk,
                          rank=self.rank, world_size=self.world_size, reduce=True,
                          progress=target.name.lower() if self.rank == 0 and self.cfg.logging.progress else None)
        if users is None:
            return result.metrics
        return {**result.metrics, "sampled_users": result.num_users, "sampled_from": eligible}


def train_loop_per_worker(raw_config: dict[str, Any]) -> dict[str, Any]:
    cfg = Config.from_dict(raw_config, source="train_loop_config")
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    _configure_threads(cfg, world_size)

    # Each rank hashes and reads only its share of the interaction files/row groups (with retries
    # and a background prefetch, data_loaders/stream.py); the shares are merged over the group.
    dataset = open_dataset(cfg.data.url, storage_options=cfg.data.storage_options or None,
                           verify_share=(rank, world_size))
    # The simulator's UNBIASED_TEST (evaluated with test) and UNBIASED_VALID (evaluated with valid)
    # splits, when present; `select` is the split whose metric chooses the epoch (eval.select_split).
    wanted, select = present_splits(cfg, dataset.manifest)
    splits = interaction_csrs(dataset, wanted, rank=rank, world_size=world_size,
                              all_gather=_all_gather_objects)
    train = splits[Split.TRAIN]
    model = build_from_config(cfg, dataset, splits, device)  # seeds torch: same initial tables on every rank
    sharded = shard_model(model, device=device, sharding=cfg.train.sharding, kernel=cfg.train.embedding_kernel,
                          optimizer=cfg.train.optimizer, lr=cfg.train.learning_rate,
                          weight_decay=cfg.train.weight_decay, world_size=world_size,
                          dense_data_parallel=cfg.train.dense_engine == "torch",
                          dense_weight_decay=cfg.train.dense_weight_decay,
                          dense_lr=cfg.train.dense_learning_rate)
    # One step interface whatever steps the dense parameters (torch/DDP or DeepSpeed ZeRO).
    stepper = build_stepper(sharded, engine=cfg.train.dense_engine, zero_stage=cfg.train.zero_stage,
                            gradient_clipping=cfg.train.gradient_clipping, optimizer=cfg.train.optimizer,
                            lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay,
                            dense_weight_decay=cfg.train.dense_weight_decay, dense_lr=cfg.train.dense_learning_rate,
                            micro_batch_size=max(1, cfg.train.batch_size * cfg.train.negatives // world_size), device=device,
                            world_size=world_size)
    dmp, optimizers = sharded.model, stepper.optimizers
    sampler = BPRSampler(train, batch_size=cfg.train.batch_size, rank=rank, world_size=world_size, seed=cfg.run.seed,
                         negatives=cfg.train.negatives, candidates=cfg.train.negative_candidates,
                         candidate_epochs=cfg.train.negative_candidate_epochs,
                         late_candidates=cfg.train.negative_candidates_after,
                         popularity_power=cfg.train.negative_popularity_power,
                         popularity_from_epoch=cfg.train.negative_popularity_from_epoch)
    evaluator = Evaluator(cfg, splits, rank, world_size)
    # train.weight_average_decay > 0: evaluation ranks with an average of the weights (taken after the
    # stepper is built: DeepSpeed may re-point the dense parameters into its flat buffers).
    average = WeightAverage(dmp, cfg.train.weight_average_decay) if cfg.train.weight_average_decay > 0 else None
    evaluated = average.applied if average is not None else nullcontext
    state = TrainState(world_size=world_size, plan=sharded.plan_summary)

    # The newest *complete* checkpoint of the run (Ray's latest unless it is corrupt or was never
    # committed: then an older one, with a warning), fetched per rank (trainer/checkpoint.py).
    with checkpoint.latest_complete(ray.train.get_checkpoint(), rank=rank) as resumed:
        if resumed is not None:
            state, sampler_state = checkpoint.load(resumed.directory, rank=rank, model=dmp, optimizers=optimizers,
                                                   world_size=world_size, plan=sharded.plan_summary,
                                                   weight_average=average)
            sampler.load_state_dict(sampler_state)
            state.resumes.append(resumed.record(state.epoch))
    # A resumed run goes on at the rate its checkpoint was written with (the plateau schedule).
    if state.learning_rate:
        stepper.set_learning_rate(state.learning_rate)
    else:
        state.learning_rate = cfg.train.learning_rate
    tracker = Tracker(cfg, rank)
    faults = FaultInjector(cfg, rank, world_size)  # run.fail_at_step (a testing aid; off by default)
    inner = dmp.module  # the model itself (sharded tables inside), for its own methods
    if rank == 0:
        print(f"[cimrec] {world_size} worker(s) on {device}; tables: {sharded.plan_summary}; {stepper.summary}; "
              f"{train.num_rows} users, {train.num_cols} items, {train.indices.size} train edges"
              + (f"; resumed after epoch {state.epoch}" if resumed is not None else ""), flush=True)

    def stop_early() -> bool:
        return state.bad_evals >= cfg.train.patience and state.epoch >= cfg.train.min_epochs

    for epoch in range(state.epoch, cfg.train.epochs):
        if stop_early():  # a finished run restarted under its name
            break
        started = time.perf_counter()
        dmp.train()
        # Per-epoch model work (a resampled graph, refreshed codebook prior ...); identical on
        # every rank because it is seeded by (run.seed, epoch), never by rank.
        epoch_stats = inner.start_epoch(epoch) if hasattr(inner, "start_epoch") else {}
        # Part of epoch_seconds; separate because it is per epoch, not per step (benchmarks/scale.py).
        epoch_stats["start_epoch_seconds"] = time.perf_counter() - started
        losses = []
        # Each scalar the model's loss returns (bpr, reg, diffusion, vq, topo ...), summed over the
        # epoch: the total alone cannot say which term moves when a curve turns.
        term_sums: dict[str, float] = {}
        steps = sampler.epoch(epoch)
        if rank == 0 and cfg.logging.progress:
            steps = progress_bar(steps, total=sampler.steps_per_epoch(), desc=f"epoch {epoch + 1}", unit="step")
        for step, batch in enumerate(steps):
            if cfg.train.max_steps_per_epoch and step >= cfg.train.max_steps_per_epoch:  # a timing/smoke run
                break
            faults.maybe_fail(epoch * sampler.steps_per_epoch() + step)
            out = stepper.forward(torch.as_tensor(batch.users, device=device),
                                  torch.as_tensor(batch.positives, device=device),
                                  torch.as_tensor(batch.negatives, device=device))
            stepper.zero_grad()
            stepper.backward(out["loss"])
            stepper.step()
            if average is not None:
                average.update()
            losses.append(float(out["loss"].detach()))
            for key, value in out.items():
                if key != "loss" and torch.is_tensor(value) and value.dim() == 0:
                    term_sums[key] = term_sums.get(key, 0.0) + float(value.detach())
        # The total and each term's epoch mean, averaged over ranks (every rank runs the same model,
        # so every rank has the same terms): logged as `loss` and `loss/<term>`.
        terms = sorted(term_sums)
        means = _mean_over_ranks([float(np.mean(losses))] + [term_sums[k] / max(len(losses), 1) for k in terms], device)
        metrics: dict[str, Any] = {"epoch": epoch + 1, "loss": means[0], "learning_rate": state.learning_rate,
                                   "epoch_seconds": time.perf_counter() - started, **epoch_stats,
                                   **{f"loss/{k}": v for k, v in zip(terms, means[1:])}}
        # Peak memory of every worker process so far (benchmarks/scale.py): the largest, and per rank.
        metrics["peak_rss_mb_ranks"] = [round(m, 1) for m in _all_gather_objects(_peak_rss_mb())]
        metrics["peak_rss_mb"] = max(metrics["peak_rss_mb_ranks"])
        state.epoch = epoch + 1
        evaluate_now = (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs
        if not evaluate_now:
            state.history.append(metrics)
            tracker.log(metrics)
            ray.train.report(metrics)
            continue
        dmp.eval()
        started = time.perf_counter()
        if average is not None:  # what the average buys, read off the same run
            metrics.update({f"valid_live/{k}": v for k, v in evaluator(inner, Split.VALID).items()})
        with evaluated():
            valid = evaluator(inner, Split.VALID)
            unbiased_valid = evaluator(inner, Split.UNBIASED_VALID) if Split.UNBIASED_VALID in wanted else {}
            # eval.test_curve: test at every evaluation, logged for the test-picked protocol (T) of some
            # published figures; nothing below reads it, so selection stays on valid.
            test_curve = evaluator(inner, Split.TEST) if cfg.eval.test_curve else {}
        metrics.update({f"valid/{k}": v for k, v in valid.items()})
        metrics.update({f"test_curve/{k}": v for k, v in test_curve.items()})
        metrics.update({f"unbiased_valid/{k}": v for k, v in unbiased_valid.items()})
        metrics["eval_seconds"] = time.perf_counter() - started
        score = (unbiased_valid if select == Split.UNBIASED_VALID else valid)[cfg.eval.select_metric]
        metrics["valid_score"] = score
        # What Ray ranks checkpoints by: the valid score, ties going to the earlier epoch. Valid
        # metrics move in steps of 1/#users, so ties are common, and the loop's best epoch is the
        # first of a tie (strict improvement); with the plain score Ray could keep a later tied
        # checkpoint and drop the best epoch's.
        metrics["checkpoint_score"] = score - 1e-12 * (epoch + 1)
        if score > state.best_score:
            state.best_score, state.best_epoch, state.bad_evals = score, epoch + 1, 0
            state.best_valid, state.best_unbiased_valid = valid, unbiased_valid
            with evaluated():
                state.best_test = evaluator(inner, Split.TEST)
                state.best_test_valid_masked = evaluator(inner, Split.TEST, mask_valid=True)
                if Split.UNBIASED_TEST in wanted:
                    state.best_unbiased_test = evaluator(inner, Split.UNBIASED_TEST)
        else:
            state.bad_evals += 1
            rate = next_learning_rate(cfg.train, state.learning_rate, state.bad_evals, epoch + 1)
            if rate != state.learning_rate:
                stepper.set_learning_rate(rate)
                if rank == 0:
                    print(f"[cimrec] learning rate {state.learning_rate:.3g} -> {rate:.3g} after {state.bad_evals} "
                          f"evaluations without a better {cfg.eval.select_metric}", flush=True)
                state.learning_rate = rate
        metrics["best_epoch"] = state.best_epoch
        metrics["best_valid_score"] = state.best_score
        state.history.append(metrics)
        tracker.log(metrics)
        if rank == 0:
            print(f"[cimrec] epoch {epoch + 1}: loss {metrics['loss']:.4f}, {select.name.lower()} {cfg.eval.select_metric} "
                  f"{score:.4f} (best {state.best_score:.4f} @ {state.best_epoch}, test there "
                  f"{state.best_test[cfg.eval.select_metric]:.4f}), "
                  f"{metrics['epoch_seconds']:.1f}s train / {metrics['eval_seconds']:.1f}s eval", flush=True)
        with tempfile.TemporaryDirectory(prefix="cimrec-ckpt-") as directory:
            checkpoint.save(directory, rank=rank, model=dmp, optimizers=optimizers,
                            sampler_state=sampler.state_dict(), state=state,
                            weight_average=average.state_dict() if average is not None else None)
            # Upload (Ray), then commit: rank 0 writes the manifest once every rank's files are stored.
            checkpoint.report(metrics, directory, rank=rank, epoch=epoch + 1)
        if stop_early():
            if rank == 0:
                print(f"[cimrec] early stop: no better {select.name.lower()} {cfg.eval.select_metric} for {cfg.train.patience} evaluations", flush=True)
            break
    tracker.finish(asdict(state))
    return asdict(state)
