"""MLflow: experiments, parent/child runs, params, metrics, artifacts, and reading trials back.

This is the only module that imports MLflow. What the runs hold, and every tag's name, is declared in
`bench.records`; this module writes and reads it:

    tracker = Tracker("sqlite:///mlflow.db", suite.name)
    run_id = tracker.open_trial(record, name, parent_id)      # tags and params, outcome `running`
    with tracker.metrics_writer(run_id) as log_metrics:        # curves, batched
        result = train_trial(spec, log_metrics=log_metrics)
    tracker.close_trial(run_id, dataclasses.replace(record, summary=...))
    tracker.trials_table()                                     # every ended trial, for bench.score

Curves go through `MetricsWriter`, a plain `log_metrics(metrics, step)` callable that buffers and
writes with `MlflowClient.log_batch` (every 30 s, every 1,000 values, and when the trial ends): one
synchronous call per batch, instead of Lightning's MLFlowLogger whose asynchronous queue costs about a
second per trial to shut down.

First use of a database store (creating or migrating its tables, creating the experiment) runs under
the store's lock (`bench.locks`), so workers started together on a fresh store never race.

**What the MLflow UI shows.** The experiment is tagged as a model-training experiment
(`mlflow.experimentKind`, which MLflow 3's UI reads to open it on its runs table instead of the GenAI
overview) and carries a description (`mlflow.note.content`: the suite's description and how its runs are
laid out); every run carries a description too, and `mlflow.source.name`/`mlflow.source.git.commit`
(the table's Source and Version columns). MLflow 3.17's UI also keeps a per-browser GenAI / Model
training switch (default GenAI) that the URL parameter `workflowType=machine_learning` sets: the links
`ui_links` makes carry it.

**Artifacts** of a SQLite store go beside the database (`<dir of mlflow.db>/mlruns/<experiment>/`),
not into `./mlruns` of whatever directory the process runs in (MLflow's default for a database store):
a run against `sqlite:////tmp/x/mlflow.db` keeps everything under /tmp/x.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
    MLFLOW_RUN_NOTE,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
)

from bench import records
from bench.faults import failpoint
from bench.locks import create_once, sqlite_wal, store_lock
from bench.outcomes import OUTCOMES
from bench.records import RunFields, StudyRecord, TrialRecord
from bench.spec import Suite

BATCH = 1000  # MLflow's limit on metrics per log_batch request; params and tags: 100


class _NoCaughtDatabaseErrors(logging.Filter):
    """MLflow logs every database error with its traceback before raising it again as an MlflowException;
    bench reports what it raises (a full disk, a damaged store: `bench.faults.explain`), once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SQLAlchemy database error")


logging.getLogger("mlflow.store.db.utils").addFilter(_NoCaughtDatabaseErrors())
PARAM_CHARS, TAG_CHARS = 6000, 5000  # value lengths every MLflow backend accepts
# MLflow 3's experiment kinds (its UI's `ExperimentKind`): this one opens on the runs table, not GenAI.
EXPERIMENT_KIND, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
WORKFLOW = "workflowType=machine_learning"  # MLflow 3.17's UI switch to "Model training", by URL
UI_HOST, UI_PORT = "127.0.0.1", 5000  # where `bench ui` serves the UI unless told otherwise


class MetricsWriter:
    """`log_metrics(metrics, step)` for one run: buffered, written in batches, flushed on `flush()` (and
    on leaving a `with` block). Metric names are cleaned as MLflow requires (letters, digits, `_/. -`)."""

    def __init__(self, client: MlflowClient, run_id: str, every_s: float = 30.0, size: int = BATCH):
        self.client, self.run_id, self.every_s, self.size = client, run_id, every_s, size
        self._buffer: list[Metric] = []
        self._since = time.monotonic()

    def __call__(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            name = records.curve_name(key)
            if isinstance(value, str) or name is None:
                continue
            self._buffer.append(Metric(re.sub(r"[^a-zA-Z0-9_/. -]+", "", name), float(value), now, int(step)))
        if len(self._buffer) >= self.size or time.monotonic() - self._since >= self.every_s:
            self.flush()

    def flush(self) -> None:
        buffer, self._buffer = self._buffer, []
        self._since = time.monotonic()
        if buffer:
            failpoint("trial.metrics")
        for i in range(0, len(buffer), self.size):
            self.client.log_batch(self.run_id, metrics=buffer[i : i + self.size])

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()


def links(base_url: str, experiment_id: str, suite: str, suite_run: str | None = None) -> dict[str, str]:
    """MLflow UI addresses of a suite's runs table and (given its suite run) of its leaderboard page, in
    the UI's Model training view."""
    experiment = f"{base_url.rstrip('/')}/#/experiments/{experiment_id}"
    out = {"runs": f"{experiment}/runs?{WORKFLOW}"}
    if suite_run:
        out["leaderboard"] = (
            f"{experiment}/runs/{suite_run}/artifacts/{records.LEADERBOARD_DIR}/{suite}.html?{WORKFLOW}"
        )
    return out


def ui_links(tracking_uri: str, base_url: str) -> dict[str, dict[str, str]]:
    """Every suite a store holds (an experiment with study runs), by name, with its UI addresses. Reads
    only; an empty or missing store has none."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        return {}
    client = MlflowClient(tracking_uri=tracking_uri)
    out = {}
    for exp in client.search_experiments(ViewType.ACTIVE_ONLY):

        def first(kind: str, exp: Any = exp) -> str | None:
            found = client.search_runs(
                [exp.experiment_id], f"tags.`{records.KIND}` = '{kind}'", ViewType.ACTIVE_ONLY, max_results=1
            )
            return found[0].info.run_id if found else None

        suite_run = first(records.SUITE_KIND)
        if suite_run or first(records.STUDY_KIND):
            out[exp.name] = links(base_url, exp.experiment_id, exp.name, suite_run)
    return out


def artifact_root(tracking_uri: str) -> Path | None:
    """Where a SQLite store's artifacts go: `mlruns/` beside the database file (None for other stores,
    whose artifact root is the server's or MLflow's default)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlruns"


class Tracker:
    """One suite's MLflow experiment, through an explicit `MlflowClient` (no global active run).
    `description` becomes the experiment's description when it has none; `source` (the suite file) the
    Source column of its runs."""

    def __init__(
        self, tracking_uri: str, experiment: str, *, description: str | None = None, source: str | None = None
    ):
        self.uri, self.name, self.source = tracking_uri, experiment, source
        # Creating the client creates (or migrates) the store's tables: the first thing workers race on.
        create_once(tracking_uri, lambda at: MlflowClient(tracking_uri=at))
        with store_lock(tracking_uri):
            sqlite_wal(tracking_uri)
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.experiment_id = self._experiment(experiment)
            self._describe(records.experiment_note(experiment, description))

    @classmethod
    def for_suite(cls, suite: Suite) -> Tracker:
        """The tracker of a suite's experiment, with its description and source."""
        path = suite.path.resolve()
        source = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        return cls(suite.settings.tracking_uri, suite.name, description=suite.description, source=str(source))

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        root = artifact_root(self.uri)
        location = (root / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)).as_uri() if root else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by a worker through an MLflow server (no lock there)
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _describe(self, note: str) -> None:
        """Mark the experiment as model training and give it a description, unless it has them (a
        description edited in the UI is kept)."""
        tags = self.client.get_experiment(self.experiment_id).tags
        for key, value in ((EXPERIMENT_KIND, TRAINING_KIND), (MLFLOW_RUN_NOTE, note)):
            if key not in tags:
                self.client.set_experiment_tag(self.experiment_id, key, value[:TAG_CHARS])

    # -- records ---------------------------------------------------------------------------------
    def open_trial(self, record: TrialRecord, name: str, parent_id: str | None) -> str:
        """A child run of `parent_id` holding the record's tags and params (outcome `running`)."""
        fields = records.encode(record)
        run_id = self.create_run(name, fields.tags, parent_id=parent_id, note=records.note(record))
        self.log(run_id, params=fields.params)
        return run_id

    def close_trial(self, run_id: str, record: TrialRecord) -> None:
        """Record how the trial ended (`record.summary`): summary metrics, outcome, the error text as an
        artifact, and the run's final status."""
        if record.summary is None:
            raise ValueError(f"trial {record.trial_id} has no summary to record")
        fields = records.encode(record)
        tags = {k: fields.tags[k] for k in records.END_TAGS} | {MLFLOW_RUN_NOTE: records.note(record)}
        self.log(run_id, metrics=fields.metrics, tags=tags)
        if record.summary.error:
            self.client.log_text(run_id, record.summary.error, records.ERROR_ARTIFACT)
        self.finish(run_id, record.ended_status)

    def open_study(self, record: StudyRecord, name: str) -> str:
        """A study's parent run with its tags and params."""
        fields = records.encode(record)
        run_id = self.create_run(name, fields.tags, note=records.note(record))
        self.log(run_id, params=fields.params)
        return run_id

    def study_budget(self, run_id: str, record: StudyRecord) -> None:
        """A study run's budget changed (the suite extended it): its `trials` tag and description."""
        fields = records.encode(record)
        self.log(
            run_id, tags={records.SLOTS: fields.tags[records.SLOTS], MLFLOW_RUN_NOTE: records.note(record)}
        )

    def suite_run(self, suite: str) -> str:
        """The suite's own run (found, or made), which holds the leaderboard files."""
        key = records.suite_key(suite)
        return self.find_run(key) or self.create_run(suite, key, note=records.suite_note(suite))

    @property
    def artifact_location(self) -> str:
        """Where the experiment's artifacts go (a local directory, or a server's or object store's URI)."""
        return str(self.client.get_experiment(self.experiment_id).artifact_location)

    def metrics_writer(self, run_id: str) -> MetricsWriter:
        return MetricsWriter(self.client, run_id)

    # -- writing --------------------------------------------------------------------------------
    def create_run(
        self, name: str, tags: Mapping[str, Any], parent_id: str | None = None, note: str | None = None
    ) -> str:
        all_tags = {MLFLOW_RUN_NAME: name, **{k: records.text(v) for k, v in tags.items()}}
        if parent_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_id
        if note:
            all_tags[MLFLOW_RUN_NOTE] = note[:TAG_CHARS]
        if self.source:
            all_tags[MLFLOW_SOURCE_NAME], all_tags[MLFLOW_SOURCE_TYPE] = self.source, "LOCAL"
        if tags.get(records.GIT_COMMIT):
            all_tags[MLFLOW_GIT_COMMIT] = records.text(tags[records.GIT_COMMIT])
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        return run.info.run_id

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        """Params, finite metrics and tags in one batched call."""
        now = int(time.time() * 1000)
        ms = [
            Metric(k, float(v), now, step)
            for k, v in (metrics or {}).items()
            if v is not None and math.isfinite(float(v))
        ]
        ps = [Param(k, records.text(v)[:PARAM_CHARS]) for k, v in (params or {}).items()]
        ts = [RunTag(k, records.text(v)[:TAG_CHARS]) for k, v in (tags or {}).items()]
        for i in range(0, max(len(ms), len(ps), len(ts)), 100):
            self.client.log_batch(
                run_id, metrics=ms[i : i + 100], params=ps[i : i + 100], tags=ts[i : i + 100]
            )

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(run_id, json.loads(json.dumps(data, default=str)), artifact_file)

    def log_artifacts(self, run_id: str, paths: Iterable[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def reopen(self, run_id: str) -> None:
        """A finished study's run runs again (its study was extended with more trials)."""
        if self.run_status(run_id) != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")

    def retire(self, run_id: str, reason: str) -> None:
        """A run whose trial died (kill -9) and is retried: marked KILLED and hidden (soft-deleted),
        so each trial appears exactly once among the experiment's active runs."""
        try:
            self.client.set_tag(run_id, records.RETIRED, reason)
            failpoint("retire.tagged")
            self.client.set_terminated(run_id, "KILLED")
            self.client.delete_run(run_id)
        except MlflowException:
            pass

    # -- finding --------------------------------------------------------------------------------
    def find_run(self, tags: Mapping[str, str]) -> str | None:
        """The id of an active run carrying all these tags (e.g. `records.study_key(name)`), if any."""
        clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], clauses, ViewType.ACTIVE_ONLY, max_results=1)
        return runs[0].info.run_id if runs else None

    def find_runs(self, tags: Mapping[str, str]) -> list[tuple[str, str]]:
        """(run id, status) of every active run carrying all these tags, oldest first."""
        clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.runs(clauses)
        return [(r.info.run_id, r.info.status) for r in sorted(runs, key=lambda r: r.info.start_time)]

    def read_record(self, run_id: str) -> TrialRecord | None:
        """The record one trial or horizon run holds."""
        run = self.client.get_run(run_id)
        fields = RunFields(tags=run.data.tags, params=run.data.params, metrics=run.data.metrics)
        return records.decode(fields, run_id=run_id, status=run.info.status)

    def adopt(self, run_id: str, parent_id: str) -> None:
        """Make `run_id` a child of `parent_id` (a horizon recorded by a dead attempt joins the retry's run)."""
        self.client.set_tag(run_id, MLFLOW_PARENT_RUN_ID, parent_id)

    def runs(self, filter_string: str = "", max_results: int = 50000) -> list[Any]:
        out, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string,
                ViewType.ACTIVE_ONLY,
                max_results=max_results,
                page_token=token,
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    def run_status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def run_tag(self, run_id: str, key: str) -> str | None:
        return self.client.get_run(run_id).data.tags.get(key)

    # -- links ----------------------------------------------------------------------------------
    def links(self, base_url: str, suite_run: str | None = None) -> dict[str, str]:
        """MLflow UI addresses (under `base_url`, e.g. http://127.0.0.1:5000) of this experiment's runs
        table and, given the suite run, of its leaderboard page."""
        return links(base_url, self.experiment_id, self.name, suite_run)

    # -- reading back ---------------------------------------------------------------------------
    def read_trials(self, *, ended: bool = True, kinds: tuple[str, ...] = records.KINDS) -> list[TrialRecord]:
        """Every trial run of the experiment as its record (with `ended`, only those that ended; `kinds`
        adds `records.HORIZON` for the runs of each horizon)."""
        out = []
        for run in self.runs(f"tags.`{records.KIND}` != '{records.STUDY_KIND}'"):
            if ended and run.info.status not in records.ENDED:
                continue
            data = run.data
            fields = RunFields(tags=data.tags, params=data.params, metrics=data.metrics)
            record = records.decode(fields, run_id=run.info.run_id, status=run.info.status)
            if record is not None and record.kind in kinds:
                out.append(record)
        return out

    def trials_table(self) -> pd.DataFrame:
        """Every ended trial of the experiment as the table `bench.score` documents."""
        return self._table(records.KINDS)

    def results_table(self) -> pd.DataFrame:
        """Every ended trial and every recorded horizon (kind `horizon`): what `bench.laws` reads."""
        return self._table((*records.KINDS, records.HORIZON))

    def _table(self, kinds: tuple[str, ...]) -> pd.DataFrame:
        # a run whose record was left half-written (no outcome, or one bench does not know) is no trial's
        # result: left out (`bench run` retires it, see `bench.repair`)
        done = [
            r
            for r in self.read_trials(kinds=kinds)
            if r.summary is not None and r.summary.outcome in OUTCOMES
        ]
        rows = [records.table_row(r) for r in done]
        return pd.DataFrame(rows, columns=list(records.COLUMNS))

    def curves(
        self, run_ids: Mapping[str, str], metric: str
    ) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """Validation (`metric`) and training-loss curves for trial_id -> run_id."""
        out = {}
        for trial_id, run_id in run_ids.items():
            val = self.client.get_metric_history(run_id, metric)
            train = self.client.get_metric_history(run_id, "train/loss")
            out[trial_id] = {
                "val": sorted((m.step, m.value) for m in val),
                "train": sorted((m.step, m.value) for m in train),
            }
        return out
