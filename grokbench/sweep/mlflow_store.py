"""The MLflow tracking store: every read and write grokbench makes to it goes through this module.

A sweep's runs are found by two tags, the sweep id and the trial key (`trial_filter`); every search is paged
(`PAGE` runs a page), and readers see only runs of trials: a run without a trial key (the analysis run that
`python -m analysis.tables` logs, a sweep's or a benchmark's parent run) is never counted as one. A parent run
(`parent_run`) is found by its kind and its identifying tags; its children point at it with MLflow's own
`mlflow.parentRunId` tag, so the MLflow UI nests them under it. Reads return plain records (`TrialRecord`, flat dicts);
what the planner makes of them is its own business. Callers wrap calls that may meet a store that is down in
`grokbench.sweep.retry.patiently`; URIs are checked in `grokbench.sweep.uri`, provenance comes from
`grokbench.sweep.provenance`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokbench.sweep import storage
from grokbench.sweep.errors import TrackingError
from grokbench.sweep.keys import EXPERIMENT_PREFIX, FINAL_STATUSES, KEY_TAG, SWEEP_TAG, VERSION_TAG, outcome_rank
from grokbench.sweep.provenance import code_version, context_tags
from grokbench.sweep.uri import sqlite_path

log = logging.getLogger("grokbench.sweep.mlflow_store")

STORE_SETUP_LOGGERS = ("mlflow.store.db.utils", "alembic")
PAGE = 1000  # runs per search request
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
CURVE_SENTINEL = "train_time_s"  # every evaluation of every task logs it, last of its point: its last step is the
# run's last logged one
KIND_TAG = "grokbench.kind"  # "analysis" on the run of an analysis.tables invocation; trial runs have none
CHECKPOINT_TAG = "grokbench.checkpoint"  # where a trial's latest checkpoint is
CONTINUED_TAG = "grokbench.continued_by"  # the sweep that continued a trial's run with a larger budget
PRIOR_STATUS_TAG = "grokbench.prior_status"  # the outcome a continued run had before its budget was raised
BEST_TAG = "grokbench.best"
PARENT_TAG = "grokbench.parent"  # what a parent run groups: "sweep" or "benchmark"; parent runs have no trial key
SWEEP_PARENT = "sweep"  # the PARENT_TAG of a sweep's parent run
PARENT_IDENTITY_TAG = "grokbench.parent_identity"  # the names of the tags that tell a parent from others of its kind
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own link from a child run to its parent
BEST_PREFIX = "best."  # experiment tags, one per searched setting: best.<sweep id>.<method>.<setting> = value


def quiet_store_setup() -> None:
    """MLflow announces at INFO each table it creates or migrates in a new SQLite store (and alembic each step): noise
    in every command's output. Warnings and errors still show."""
    for name in STORE_SETUP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def store_errors() -> tuple[type[BaseException], ...]:
    """What reading a store raises when it is missing, unreachable or not an MLflow store."""
    from mlflow.exceptions import MlflowException

    return TrackingError, MlflowException, OSError


def dataset_input(name: str, digest: str, module: str, profile: dict[str, Any]) -> dict[str, Any]:
    """A dataset made by code (`module`) that a run trained on, as `TrackingStore.log_dataset` takes it."""
    return {
        "name": name,
        "digest": digest,
        "source_type": "code",
        "source": json.dumps({"tags": {"mlflow.source.name": module}}),
        "profile": json.dumps(profile),
        "tags": {"mlflow.data.context": "training"},
    }


def trial_filter(sweep_id: str | None = None, key: str | None = None) -> str:
    """The search filter for a sweep's runs, or one trial's (a sweep id MLflow could not read in it is refused)."""
    sweep = f"tags.`{SWEEP_TAG}` = '{storage.check_name(sweep_id)}'" if sweep_id else ""
    parts = [sweep, f"tags.`{KEY_TAG}` = '{key}'" if key else ""]
    return " and ".join(p for p in parts if p)


@dataclass(frozen=True)
class TrialRecord:
    """What the tracking store holds of a trial: its run's outcome, how far it went, and where it can go on."""

    sweep_id: str
    run_id: str
    status: str
    epochs: int  # trained
    epochs_to_grok: int | None
    checkpoint: str | None  # its latest checkpoint (its final one once it ended), where a sweep saved one
    prior_status: str | None = None  # the outcome it had when a sweep raised its budget
    event_epochs: Mapping[str, int] = field(default_factory=dict)  # its task's further events that happened
    machine: str = "machine not recorded"  # where its run trained (grokbench.machine.label of its tags)

    @classmethod
    def of(cls, run) -> TrialRecord:
        from grokbench.machine import from_tags, label  # torch comes with it: only when a record is read

        return cls(
            sweep_id=run.data.tags.get(SWEEP_TAG, "?"),
            run_id=run.info.run_id,
            status=run.data.tags.get("status", "running"),
            epochs=int(_figure(run, "epochs") or 0),
            epochs_to_grok=_whole(run.data.metrics.get("epochs_to_grok")),
            checkpoint=run.data.tags.get(CHECKPOINT_TAG),
            prior_status=run.data.tags.get(PRIOR_STATUS_TAG),
            event_epochs=_event_epochs(run),
            machine=label(from_tags(run.data.tags)),
        )


class TrackingStore:
    """One tracking store, by URI: its experiments, trial runs with their curves and summaries, analysis runs."""

    def __init__(self, uri: str):
        self.uri = uri
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import mlflow

            quiet_store_setup()
            self._client = mlflow.MlflowClient(self.uri)
        return self._client

    # ---- experiments ---------------------------------------------------------------------------------------------

    def experiment_id(self, name: str) -> str | None:
        experiment = self.client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment else None

    def prepare_experiment(self, name: str) -> str:
        """Create the experiment once, from the driver (trials never create it), and return its id."""
        found = self.experiment_id(name)
        if found is not None:
            return found
        path = sqlite_path(self.uri)  # artifacts next to the database, not in whatever directory a process runs in
        location = (path.parent / "mlartifacts").as_uri() if path else None
        experiment_id = self.client.create_experiment(name, artifact_location=location)
        # the MLflow 3 UI opens in its GenAI view; this tag makes it show the runs table and charts
        self.client.set_experiment_tag(experiment_id, "mlflow.experimentKind", "custom_model_development")
        return experiment_id

    def grokbench_experiments(self) -> dict[str, str]:
        """Name → id of every grokbench experiment."""
        found = _paged(lambda token: self.client.search_experiments(max_results=PAGE, page_token=token))
        return {e.name: e.experiment_id for e in found if e.name.startswith(EXPERIMENT_PREFIX)}

    def experiment_tags(self, name: str) -> dict[str, str]:
        experiment = self.client.get_experiment_by_name(name)
        return dict(experiment.tags) if experiment else {}

    def best_tags(self, name: str) -> dict[str, str]:
        """The experiment's `best.<sweep>.<method>.<setting>` tags: what its searches found."""
        return {k: v for k, v in self.experiment_tags(name).items() if k.startswith(BEST_PREFIX)}

    @staticmethod
    def best_tag_parts(key: str) -> tuple[str, str, str] | None:
        """(sweep id, method, setting) of a `best.<sweep>.<method>.<setting>` tag; None for any other key."""
        parts = tuple(key[len(BEST_PREFIX) :].rsplit(".", 2)) if key.startswith(BEST_PREFIX) else ()
        return parts if len(parts) == 3 and all(parts) else None

    def set_experiment_tags(self, experiment_id: str, tags: dict[str, str]) -> None:
        """Set each tag on the experiment (a tag already there takes the new value)."""
        for tag, value in tags.items():
            self.client.set_experiment_tag(experiment_id, tag, value)

    def mark_best(self, experiment_id: str, sweep_id: str, key: str, tags: dict[str, str]) -> None:
        """A search's best setting as experiment tags, and its run tagged; every write idempotent."""
        self.set_experiment_tags(experiment_id, tags)
        for run in self.trial_runs([experiment_id], sweep_id, key):
            self.client.set_tag(run.info.run_id, BEST_TAG, "true")

    # ---- finding trial runs ------------------------------------------------------------------------------------------

    def trial_runs(self, experiment_ids: list[str], sweep_id: str | None = None, key: str | None = None) -> list:
        """The runs of trials in these experiments (of one sweep, of one trial), every page."""
        where = trial_filter(sweep_id, key)
        pages = _paged(
            lambda token: self.client.search_runs(
                experiment_ids, filter_string=where, max_results=PAGE, page_token=token
            )
        )
        return [run for run in pages if KEY_TAG in run.data.tags]

    def runs_with_outcome(self, experiment_id: str, outcomes: tuple[str, ...] = FINAL_STATUSES) -> list:
        return [run for run in self.trial_runs([experiment_id]) if run.data.tags.get("status") in outcomes]

    def stored_trials(self, experiment_name: str) -> dict[str, TrialRecord]:
        """Trial key → `TrialRecord` of every trial in the experiment, from any sweep and any grokbench version:
        its run with the best outcome (an outcome, then a failure, then none), the newest of those."""
        experiment_id = self.experiment_id(experiment_name)
        runs = self.trial_runs([experiment_id]) if experiment_id is not None else []
        best: dict[str, Any] = {}
        for run in sorted(runs, key=lambda r: (outcome_rank(r.data.tags.get("status")), r.info.start_time or 0)):
            best[run_key(run)] = run
        return {key: TrialRecord.of(run) for key, run in best.items()}

    def find_trial_run(self, experiment_id: str, sweep_id: str, key: str) -> tuple[str, int] | None:
        """(run id, last logged step) of a trial's run in this sweep, if it has one (found by its recomputed key, so
        that a sweep started by an earlier grokbench finds its runs when this one resumes it)."""
        found = [run for run in self.trial_runs([experiment_id], sweep_id) if run_key(run) == key]
        if not found:
            return None
        run_id = min(found, key=lambda run: run.info.start_time).info.run_id  # the one a resume has always used
        return run_id, max((step for step, _, _ in self.metric_history(run_id, CURVE_SENTINEL)), default=-1)

    def reopen_run(self, run_id: str, sweep_id: str) -> tuple[str, int]:
        """(run id, last logged step) of a stored trial's run that this sweep continues: marked running again, and
        as this sweep's, once (a resumed sweep finds it marked and leaves its status alone)."""
        run = self.get_run(run_id)
        if run.data.tags.get(CONTINUED_TAG) != sweep_id:
            self.client.update_run(run_id, status="RUNNING")
            prior = run.data.tags.get("status")
            tags = {CONTINUED_TAG: sweep_id, "status": "running"}
            self.log_batch(run_id, tags={**tags, PRIOR_STATUS_TAG: prior} if prior in FINAL_STATUSES else tags)
        return run_id, max((step for step, _, _ in self.metric_history(run_id, CURVE_SENTINEL)), default=-1)

    # ---- parent runs -------------------------------------------------------------------------------------------

    def parent_runs(
        self, experiment_id: str, kind: str | None = None, ident_tags: Mapping[str, str] | None = None
    ) -> list:
        """The experiment's parent runs (of one kind, with these identifying tags), oldest first."""
        wanted = {PARENT_TAG: kind, **(ident_tags or {})} if kind else dict(ident_tags or {})
        clauses = [f"tags.`{PARENT_TAG}` LIKE '%'"] + [f"tags.`{_named(k)}` = '{_named(v)}'" for k, v in wanted.items()]
        pages = _paged(
            lambda token: self.client.search_runs(
                [experiment_id], filter_string=" and ".join(clauses), max_results=PAGE, page_token=token
            )
        )
        return sorted((run for run in pages if KEY_TAG not in run.data.tags), key=lambda r: r.info.start_time or 0)

    def parent_run(self, experiment_id: str, kind: str, ident_tags: Mapping[str, str], name: str) -> str:
        """The id of the experiment's parent run of this kind and identity (e.g. "sweep", {SWEEP_TAG: sweep id}),
        made if there is none, and marked running: the work under it starts, or starts again, now. Safe to repeat
        (wrap it in `patiently`): a run whose creation's answer was lost is found by its tags the next time, and
        where two were made, the oldest is always the one."""
        if not ident_tags or KEY_TAG in ident_tags:
            raise ValueError(f"a parent run needs identifying tags and no {KEY_TAG}: {dict(ident_tags)}")
        found = self.parent_runs(experiment_id, kind, ident_tags)
        if not found:
            tags = {
                **context_tags(),
                VERSION_TAG: code_version(),
                **ident_tags,
                PARENT_TAG: kind,
                PARENT_IDENTITY_TAG: ",".join(sorted(ident_tags)),
            }
            return self.create_run(experiment_id, name, tags)
        run = found[0]
        if run.info.status != "RUNNING":
            self.client.update_run(run.info.run_id, status="RUNNING")
        return run.info.run_id

    @staticmethod
    def parent_identity(tags: Mapping[str, str]) -> dict[str, str]:
        """The tags (of a parent run) that tell it from the others of its kind, its kind among them."""
        names = [PARENT_TAG, *filter(None, tags.get(PARENT_IDENTITY_TAG, "").split(","))]
        return {name: tags[name] for name in names if name in tags}

    def sweep_summaries(self, experiment_id: str, sweep_id: str) -> list[dict[str, Any]]:
        """The summary of every finished trial of a sweep, read back from MLflow (the sweep's record of truth): its
        own runs and those of other sweeps it continued."""
        continued = _paged(
            lambda token: self.client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{CONTINUED_TAG}` = '{storage.check_name(sweep_id)}'",
                max_results=PAGE,
                page_token=token,
            )
        )
        summaries = []
        for run in [*self.trial_runs([experiment_id], sweep_id), *continued]:
            status = run.data.tags.get("status")
            if status in (None, "running"):
                continue
            params, metrics = run.data.params, run.data.metrics
            summaries.append(
                {
                    "method": params["method"],
                    "loss": params["loss"],
                    "lam": float(params["lam"]),
                    "init_scale": float(params["init_scale"]),
                    "seed": int(params["seed"]),
                    "status": status,
                    "steps_to_grok": metrics.get("steps_to_grok"),
                    "time_to_grok_s": metrics.get("time_to_grok_s"),
                }
            )
        return summaries

    # ---- writing runs ----------------------------------------------------------------------------------------------

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str], start_time: int | None = None) -> str:
        return self.client.create_run(experiment_id, start_time=start_time, run_name=name, tags=tags).info.run_id

    def get_run(self, run_id: str):
        return self.client.get_run(run_id)

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[tuple[str, float, int, int]] = (),
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Metrics as (name, value, timestamp, step), in batches MLflow takes; the params and tags go with the last
        batch, so that a tag marking the metrics as logged is never written before them."""
        from mlflow.entities import Metric, Param, RunTag

        points = [Metric(name, value, timestamp, step) for name, value, timestamp, step in metrics]
        chunks = [points[i : i + MAX_METRICS_PER_BATCH] for i in range(0, len(points), MAX_METRICS_PER_BATCH)] or [[]]
        for chunk in chunks[:-1]:
            self.client.log_batch(run_id, metrics=chunk)
        self.client.log_batch(
            run_id,
            metrics=chunks[-1],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        """`text` as the artifact file `name` (a path such as `tables/leaderboard.md` makes folders)."""
        self.client.log_text(run_id, text, name)

    def log_file(self, run_id: str, path: Path, folder: str | None = None) -> None:
        """A local file as an artifact of the run (in `folder` of its artifacts, else at their top)."""
        self.client.log_artifact(run_id, str(path), folder)

    def log_dataset(self, run_id: str, record: dict[str, Any]) -> None:
        """A dataset input (a record of `dataset_input`'s form); logging the same dataset twice adds nothing."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            record["name"], record["digest"], record["source_type"], record["source"], profile=record.get("profile")
        )
        tags = [InputTag(k, v) for k, v in record.get("tags", {}).items()]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])

    def kill_unfinished(self, experiment_id: str, sweep_id: str) -> int:
        """Mark the sweep's trial runs that were still training KILLED (MLflow's status for an interrupted run, so
        the UI shows which were); a resume sets each running again (`mark_running`). How many it marked."""
        unfinished = [
            run
            for run in self.trial_runs([experiment_id], sweep_id)
            if run.info.status == "RUNNING" and run.data.tags.get("status") not in FINAL_STATUSES
        ]
        for run in unfinished:
            self.terminate(run.info.run_id, "KILLED")
        return len(unfinished)

    def mark_running(self, run_id: str) -> None:
        """A run that trains again (resumed, retried) is RUNNING, whatever ended its last attempt."""
        if self.get_run(run_id).info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")

    def terminate(self, run_id: str, status: str, end_time: int | None = None) -> None:
        self.client.set_terminated(run_id, status=status, end_time=end_time)

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    # ---- reading runs whole ----------------------------------------------------------------------------------------

    def metric_history(self, run_id: str, name: str) -> list[tuple[int, float, int]]:
        """(step, value, timestamp) of every point, in the order logged at each step."""
        points = sorted(self.client.get_metric_history(run_id, name), key=lambda m: (m.step, m.timestamp))
        return [(m.step, m.value, m.timestamp) for m in points]

    def curve(self, run_id: str, name: str) -> dict[int, float]:
        """Step → value (of the last point logged at a step)."""
        return {m.step: m.value for m in self.client.get_metric_history(run_id, name)}

    def text_artifacts(self, run_id: str, names: Iterable[str] | None = None) -> dict[str, str]:
        """Path → text of the run's artifacts of these names; with no names, of every artifact file that is text
        (UTF-8), in any folder (the others, an image say, are left out with a note in the log)."""
        import tempfile

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small file is noise
        present = self._artifact_files(run_id)
        texts = {}
        with tempfile.TemporaryDirectory() as scratch:
            for name in present if names is None else [n for n in names if n in present]:
                data = Path(self.client.download_artifacts(run_id, name, scratch)).read_bytes()
                try:
                    texts[name] = data.decode()
                except UnicodeDecodeError:
                    log.info("run %s: artifact %s is not text; left out", run_id, name)
        return texts

    def _artifact_files(self, run_id: str, folder: str | None = None) -> list[str]:
        files = []
        for entry in self.client.list_artifacts(run_id, folder):
            files += self._artifact_files(run_id, entry.path) if entry.is_dir else [entry.path]
        return files

    @staticmethod
    def datasets(run) -> list[dict[str, Any]]:
        """A run's dataset inputs, in `log_dataset`'s form."""
        return [
            {
                "name": i.dataset.name,
                "digest": i.dataset.digest,
                "source_type": i.dataset.source_type,
                "source": i.dataset.source,
                "profile": i.dataset.profile,
                "tags": {t.key: t.value for t in i.tags},
            }
            for i in run.inputs.dataset_inputs
        ]

    def run_rows(self, experiment_ids: list[str], sweep_id: str | None = None) -> list[dict[str, Any]]:
        """Every trial run as one flat dict (run_id, experiment_id, start_time, params.x, metrics.x, tags.x)."""
        rows = []
        for run in self.trial_runs(experiment_ids, sweep_id):
            row = {
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "start_time": run.info.start_time,
                "trial_key": run_key(run),
            }
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            rows.append(row)
        return rows

    # ---- analysis runs ---------------------------------------------------------------------------------------------

    def log_analysis(self, experiment_id: str, files: list[Path], tags: dict[str, str]) -> str:
        """One run holding an analysis's files as artifacts: no trial key, no params, no status, so that no reader
        of trials counts it. A run left part-way by a store that refused a write is deleted."""
        run_id = self.create_run(
            experiment_id,
            "analysis",
            {**context_tags(), **tags, KIND_TAG: "analysis", VERSION_TAG: code_version()},
        )
        try:
            for path in files:
                self.log_file(run_id, path)
            self.terminate(run_id, "FINISHED")
        except Exception:
            with contextlib.suppress(Exception):
                self.delete_run(run_id)
            raise
        return run_id


def run_key(run) -> str:
    """A run's trial key, recomputed from the settings it stored (its params), so that a trial stored by an earlier
    grokbench, whose key tag hashed other things, is known as the same trial; the key tag where it has no settings
    yet (a run whose params were never written)."""
    from grokbench.config import ConfigError
    from grokbench.sweep.keys import trial_key

    params = run.data.params
    if "task" in params and "method" in params:
        try:
            return trial_key(params)
        except (ConfigError, KeyError, ValueError, TypeError):
            pass  # settings this version cannot read: the tag is all there is
    return run.data.tags[KEY_TAG]


def _named(text: str) -> str:
    """A tag's name or value as a search filter can hold it (a name MLflow could not read there is refused)."""
    return storage.check_name(text, "parent run tag")


def _figure(run, name: str) -> float | None:
    """A summary figure: the metric (a continued trial's latest), else the param it started with."""
    value = run.data.metrics.get(name, run.data.params.get(name))
    return None if value in (None, "None") else float(value)


def _event_epochs(run) -> dict[str, int]:
    """The epoch of each event a run's summary reports beyond memorising and grokking (a task's further events;
    one that never happened is not logged)."""
    return {
        name.removeprefix("epochs_to_"): int(value)
        for name, value in run.data.metrics.items()
        if name.startswith("epochs_to_") and name not in ("epochs_to_memorise", "epochs_to_grok")
    }


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


def _paged(fetch: Callable[[str | None], Any]) -> Iterator:
    """Every item of a paged MLflow search: `fetch(page_token)` returns one page."""
    token = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return
