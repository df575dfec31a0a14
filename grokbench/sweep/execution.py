"""Running a sweep's trials on Ray Tune: one Tune experiment for a grid, one per method for an Optuna search;
each built fresh, or restored from its storage to resume.

A restored Tuner runs the callbacks it was started with, made again from their pickled settings (see
`TrialRuns`): the driver learns of a tracking store that is gone from the error that ends `fit`, not from its own
callback objects.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from grokbench.config import TrialConfig
from grokbench.sweep.errors import TrackingError
from grokbench.sweep.plan import grid_entries, placed, search_example
from grokbench.sweep.spec import SweepSpec

GRID = "grid"


def _trainable(spec: SweepSpec):
    from ray import tune

    from grokbench.sweep.trainable import run_trial

    return tune.with_resources(run_trial, {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial})


def tuner(
    spec: SweepSpec,
    name: str,
    storage: str,
    param_space: dict,
    callbacks: list,
    search_alg=None,
    num_samples: int = 1,
    stop=None,
):
    """A Tune experiment of the spec's trials (a sweep's, or a benchmark suite's: anything with its resources,
    `max_failures` and `keep_checkpoints`), with an optional Tune `Stopper`."""
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig

    from grokbench.sweep.trainable import OBJECTIVE

    # reuse_actors: a finished trial's worker process runs the next trial of the same resources, sparing it the
    # seconds of importing torch and Ray (most of a short trial); each trial seeds its generators and sets its
    # threads itself, and grokbench keeps no state between trials in a process
    return tune.Tuner(
        _trainable(spec),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.resources.max_concurrent or None,
            search_alg=search_alg,
            num_samples=num_samples,
            reuse_actors=True,
            metric=OBJECTIVE if search_alg else None,
            mode="min" if search_alg else None,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            verbose=0,
            callbacks=callbacks,
            stop=stop,
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=spec.keep_checkpoints),
        ),
    )


def search_space(spec: SweepSpec, method: str, fault: dict | None) -> dict[str, Any]:
    from ray import tune

    config: dict[str, Any] = placed(search_example(spec, method), spec).to_dict()
    for name, r in spec.search.space[method].items():
        config[name] = tune.loguniform(r.low, r.high) if r.log else tune.uniform(r.low, r.high)
    return {"trial": {"config": config, "checkpoint_every": spec.checkpoint_every, "fault": fault}}


def optuna_search(seed: int):
    """Ray's OptunaSearch with Optuna 5's default TPE made explicit, so that Optuna 4 (which pyproject admits, and
    whose defaults differ) searches the same way: multivariate, so that weight decay and a method's strength are
    modelled jointly rather than one at a time, and with a constant liar, so that a trial still running counts as a
    poor result and two trials at a time are not both sent to the same spot."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    with warnings.catch_warnings():  # Optuna 4 calls both options experimental; Optuna 5 made them its defaults
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    return OptunaSearch(sampler=sampler)


def experiments(
    spec: SweepSpec,
    trials: list[TrialConfig],
    sweep_dir: str,
    callbacks: list,
    fault: dict | None,
    continued: dict[str, dict] | None = None,
) -> list[tuple[str, Callable[[], Any]]]:
    """(name, make a new Tuner) of each Tune experiment of the sweep; `continued` trials go on from a stored
    trial's final checkpoint."""
    from ray import tune

    if not spec.search:
        space = {"trial": tune.grid_search(grid_entries(spec, trials, fault, continued))}
        return [(GRID, lambda: tuner(spec, GRID, sweep_dir, space, callbacks))]

    def searched(method: str):
        return tuner(
            spec,
            method,
            sweep_dir,
            search_space(spec, method, fault),
            callbacks,
            search_alg=optuna_search(spec.search.seed),
            num_samples=spec.search.num_samples,
        )

    return [(method, lambda m=method: searched(m)) for method in spec.search.space]


def fit(spec: SweepSpec, planned: list[tuple[str, Callable[[], Any]]], sweep_dir: str, resume: bool) -> list:
    """Run (or resume) each Tune experiment in turn; returns their ResultGrids. A tracking store gone for good
    ends it with that TrackingError."""
    from ray import tune

    grids = []
    for name, make in planned:
        path = f"{sweep_dir}/{name}"
        if resume and tune.Tuner.can_restore(path):
            tuner = tune.Tuner.restore(path, _trainable(spec), resume_errored=True)
        else:
            tuner = make()
        try:
            grids.append(tuner.fit())
        except Exception as err:
            failure = tracking_failure(err)
            if failure is None:
                raise
            raise failure from None
    return grids


def tracking_failure(err: BaseException | None) -> TrackingError | None:
    """The TrackingError behind an error, however Tune (or Ray Client) wrapped it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, TrackingError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
