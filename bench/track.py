"""MLflow: experiments, parent/child runs, params, metrics, artifacts, and reading trials back.

This is the only module that imports MLflow. Layout in the tracking store:

    experiment  <suite name>
      run  "<suite>"                      kind=suite   resolved suite, leaderboard files and plots
      run  "<task>/<optimizer>"           kind=study   one per study (parent of its trials)
        run "<task>/<optimizer>#<n>"      kind=tune    one per tuning trial (child)
        run "<task>/<optimizer>@seed<k>"  kind=seed    reruns of the best configuration

Every trial run carries tags `bench.*` (suite, task, optimizer, study, trial_id, kind, seed, outcome,
metric, mode, target, lr), its hyperparameters as params, curves (`train/loss`, `val/...`) logged during
training by Lightning's `MLFlowLogger` (asynchronously, so logging does not slow training), summary
metrics at the end, and provenance (resolved suite, git commit, package versions, hardware).
`trials_table` reads all of that back into the table `bench.score` consumes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

TRIAL_KINDS = ("tune", "seed")


def _str(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


class Tracker:
    """One suite's MLflow experiment, through an explicit `MlflowClient` (no global active run)."""

    def __init__(self, tracking_uri: str, experiment: str):
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # created concurrently by another worker
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    # -- writing --------------------------------------------------------------------------------
    def create_run(self, name: str, tags: Mapping[str, Any], parent_id: str | None = None) -> str:
        all_tags = {MLFLOW_RUN_NAME: name, **{k: _str(v) for k, v in tags.items()}}
        if parent_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_id
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
        ps = [Param(k, _str(v)[:6000]) for k, v in (params or {}).items()]
        ts = [RunTag(k, _str(v)[:5000]) for k, v in (tags or {}).items()]
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
        mlflow.flush_async_logging()
        self.client.set_terminated(run_id, status)

    def retire(self, run_id: str, reason: str) -> None:
        """A run whose trial died (kill -9) and is retried: marked KILLED and hidden (soft-deleted),
        so each trial appears exactly once among the experiment's active runs."""
        try:
            self.client.set_tag(run_id, "bench.retired", reason)
            self.client.set_terminated(run_id, "KILLED")
            self.client.delete_run(run_id)
        except MlflowException:
            pass

    def lightning_logger(self, run_id: str) -> Any:
        """Lightning's MLFlowLogger writing into an existing run, asynchronously."""
        from lightning.pytorch.loggers import MLFlowLogger

        return MLFlowLogger(tracking_uri=self.uri, run_id=run_id, synchronous=False)

    # -- finding --------------------------------------------------------------------------------
    def find_run(self, **tags: str) -> str | None:
        """The id of the active run carrying all these `bench.*` tags, if any."""
        clauses = " and ".join(f"tags.`bench.{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], clauses, ViewType.ACTIVE_ONLY, max_results=1)
        return runs[0].info.run_id if runs else None

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

    # -- reading back ---------------------------------------------------------------------------
    def trials_table(self) -> pd.DataFrame:
        """Every recorded trial of the experiment as the table `bench.score` documents."""
        rows = []
        for run in self.runs("tags.`bench.kind` != 'study'"):
            t, m = run.data.tags, run.data.metrics
            if t.get("bench.kind") not in TRIAL_KINDS or run.info.status not in ("FINISHED", "FAILED"):
                continue
            params = json.loads(t.get("bench.params", "{}"))
            rows.append(
                {
                    "suite": t.get("bench.suite"),
                    "task": t.get("bench.task"),
                    "optimizer": t.get("bench.optimizer"),
                    "study": t.get("bench.study"),
                    "trial_id": t.get("bench.trial_id"),
                    "run_id": run.info.run_id,
                    "number": int(t.get("bench.number", -1)),
                    "kind": t.get("bench.kind"),
                    "seed": int(t.get("bench.seed", 0)),
                    "outcome": t.get("bench.outcome"),
                    "metric": t.get("bench.metric"),
                    "value": m.get("value", math.nan),
                    "mode": t.get("bench.mode", "min"),
                    "target": float(t.get("bench.target", "nan")),
                    "lr": float(t.get("bench.lr", "nan")),
                    "params": params,
                    "steps": int(m.get("steps", 0)),
                    "time_s": m.get("time_s", math.nan),
                    "steps_to_target": m.get("steps_to_target", math.nan),
                    "seconds_to_target": m.get("seconds_to_target", math.nan),
                    "tokens_to_target": m.get("tokens_to_target", math.nan),
                    "tokens_per_step": float(t.get("bench.tokens_per_step", "nan")),
                }
            )
        columns = [
            "suite", "task", "optimizer", "study", "trial_id", "run_id", "number", "kind", "seed", "outcome",
            "metric", "value", "mode", "target", "lr", "params", "steps", "time_s", "steps_to_target",
            "seconds_to_target", "tokens_to_target", "tokens_per_step",
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)

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
