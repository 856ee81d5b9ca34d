"""The run lifecycle, shared by the segmentation and scoring flows: the run's ledger and targets, how
it stops when it must publish nothing, and how every end is recorded in segmentation_runs."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.logging import get_logger, get_run_logger
from prefect.runtime import flow_run

from segflow.config import SegflowConfig, build_config, read_config_file
from segflow.contracts.check import SourcesCheck
from segflow.errors import ConfigError, ContractViolation, GateRejected, SegflowError, failure_status
from segflow.files import private_files
from segflow.ledger import RunFacts, RunLedger
from segflow.lineage_delivery import COMPLETE, LineageEmitter, RunIdentity, lineage_events
from segflow.locks import one_writer
from segflow.notify import notice, send
from segflow.stores import PublicationStore, open_stores
from segflow.tables import TABLES
from segflow.tasks.publish import Publication, publish_task, record_run, record_run_task
from segflow.timing import STAGE_SECONDS, process_seconds


def segmentation_facts(segmentation: Any, decision: Any, recipe: dict) -> RunFacts:
    """What a segmentation run decided, for its segmentation_runs row."""
    return RunFacts(
        algorithm=segmentation.algorithm,
        params=segmentation.params,
        scores=segmentation.scores,
        n_segments=segmentation.n_segments,
        gate_checks=decision.as_records(),
        gate_override=decision.override if decision.blocking else None,
        details={
            "preprocess": recipe,
            "sampling": segmentation.sampling,
            "k_search": segmentation.k_search,
            "leaderboard": segmentation.leaderboard,
            "choice": segmentation.choice,
            "gate_measures": decision.measures,
            "stability": segmentation.scores.get("stability"),
        },
    )


# What a deployment run may change: nothing that says where data comes from or goes to, which
# secrets, scheduler or webhook are used, or what code runs (those come from the worker's file).
ALLOWED_OVERRIDES = frozenset(
    {
        "gate.override",
        "clustering.algorithm",
        "clustering.k",
        "clustering.seed",
        "clustering.min_segments",
        "clustering.max_segments",
    }
)
CONFIG_FILE_VARIABLE = "SEGFLOW_CONFIG"


def run_config(
    config: SegflowConfig | None, overrides: dict[str, Any] | None, deployed: bool | None = None
) -> SegflowConfig:
    """The config a run uses. Called in a process that holds its config (the command line, a parent
    flow, tests), the one given. A deployment run, which whoever may start flow runs can parameterise,
    takes no config: it reads the config file named by SEGFLOW_CONFIG on the worker, with only the
    allow-listed overrides."""
    if deployed is None:
        context = FlowRunContext.get()
        deployed = context is not None and context.flow_run.deployment_id is not None
    if not deployed:
        if config is None:
            raise ConfigError("no config given: pass the config, or run the flow from a deployment")
        return (
            config if not overrides else build_config(config.model_dump(by_alias=True), settings(overrides))
        )
    if config is not None:
        raise ConfigError(
            "a deployment run takes no 'config' parameter: sources, targets, secrets, the scheduler and "
            f"the webhook come from the config file on the worker ({CONFIG_FILE_VARIABLE}); pass 'as_of' and "
            f"'overrides' of {', '.join(sorted(ALLOWED_OVERRIDES))}"
        )
    refused = sorted(set(overrides or {}) - ALLOWED_OVERRIDES)
    if refused:
        raise ConfigError(
            f"a deployment run may not override {', '.join(refused)}: only "
            f"{', '.join(sorted(ALLOWED_OVERRIDES))}; the rest comes from the config file on the worker"
        )
    path = os.environ.get(CONFIG_FILE_VARIABLE)
    if not path:
        raise ConfigError(
            f"this worker has no {CONFIG_FILE_VARIABLE}: set it to the config file the deployment runs with "
            "(`segflow serve --config` sets it for the deployments it serves)"
        )
    return build_config(read_config_file(Path(path)), settings(overrides or {}))


def settings(overrides: dict[str, Any]) -> list[str]:
    """Overrides as --set assignments (JSON values are YAML)."""
    return [f"{key}={json.dumps(value, default=str)}" for key, value in overrides.items()]


def resolved_as_of(as_of: date | str | None) -> date:
    """The run's business date: the one given, else today."""
    if as_of is None:
        return date.today()
    return as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of))


def run_name() -> str:
    """The flow run's name: the flow and the business date it runs for, e.g. segmentation-2026-11-29."""
    return f"{flow_run.flow_name}-{resolved_as_of(flow_run.parameters.get('as_of'))}"


def run_ledger(as_of: date | None) -> RunLedger:
    """The run's ledger, its id taken from the Prefect flow run so that a flow retry is the same run."""
    as_of = resolved_as_of(as_of)
    return RunLedger(as_of=as_of, run_id=f"{as_of:%Y%m%d}-{flow_run.id.replace('-', '')[:10]}")


class WithoutTracebackForExpectedFailures(logging.Filter):
    """Prefect logs a failed task or flow run with its traceback. segflow's own failures (a broken
    contract, a rejected gate, a missing or unreadable source, a bad config) are expected outcomes
    whose message says everything on-call needs; their traceback would read as a crash. Any other
    error keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], SegflowError):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_expected_failures() -> None:
    """Install the filter on the loggers Prefect's flow and task engines log run failures with."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, WithoutTracebackForExpectedFailures) for f in logger.filters):
            logger.addFilter(WithoutTracebackForExpectedFailures())


def parent_run() -> tuple[str, str] | None:
    """The flow run that started this one as a subflow (a backfill), with its flow's name."""
    parent_id = flow_run.parent_flow_run_id
    if parent_id is None:
        return None
    with get_client(sync_client=True) as client:
        return parent_id, client.read_flow(client.read_flow_run(parent_id).flow_id).name


def run_identity(config: SegflowConfig, run_id: str | None, as_of: date | None, **dates: date) -> RunIdentity:
    """Who this run is in its lineage events: the flow, the flow run, segflow's run id and dates."""
    parent = None
    if config.lineage.transport is not None:
        try:
            parent = parent_run()
        except Exception as error:  # the Prefect API is busy: the events go without their parent
            get_logger("segflow.lineage").warning("lineage: parent run unknown (%s)", type(error).__name__)
    return RunIdentity(flow_run.flow_name, flow_run.id, run_id, as_of, parent=parent, **dates)


@dataclass
class Run:
    """One run against its targets: what it gathered (ledger, facts, tables published) and whether its
    end is recorded."""

    config: SegflowConfig
    ledger: RunLedger
    stores: list[PublicationStore]
    dry_run: bool = False  # everything but publishing: nothing is written to the targets
    facts: RunFacts = field(default_factory=RunFacts)
    recorded: bool = False
    published: dict[str, int | None] = field(default_factory=dict)  # table -> rows written
    lineage: LineageEmitter = field(init=False)
    identity: RunIdentity | None = field(init=False)

    def __post_init__(self) -> None:
        self.lineage = LineageEmitter(self.config.lineage)
        self.identity = (
            run_identity(self.config, self.ledger.run_id, self.ledger.as_of) if self.lineage.enabled else None
        )

    def lineage_event(self, state: str, error: BaseException | None) -> Any:
        """The run's lineage event: the sources with what was learnt of them, and what it published."""
        from segflow.lineage import input_datasets, output_datasets, run_event

        ledger = self.ledger
        return run_event(
            state,
            self.identity,
            self.config.lineage.namespace,
            input_datasets(self.config.sources, ledger.rows_read, ledger.schemas, ledger.rule_outcomes),
            output_datasets(self.config.publish, self.published if state == COMPLETE else {}),
            error,
        )

    def publish(self, publication: Publication) -> dict[str, int]:
        """Publish to every target, and note the tables written with their rows."""
        counts = publish_task(self.stores, publication, self.ledger, self.facts)
        self.published = {write.name: write.rows.num_rows for write in publication.writes}
        self.published |= {"segmentation_runs": 1, "quarantine": len(self.ledger.quarantine)}
        if "segment_changes" in self.published:
            self.published |= {name: None for name, spec in TABLES.items() if spec.mode == "derived"}
        return counts

    def stop(self, error: SegflowError) -> NoReturn:
        """Record why the run publishes nothing new, then end it with that error (and its exit code)."""
        if not self.dry_run:
            record_run_task(self.stores, self.ledger, failure_status(error), str(error), self.facts)
            self.recorded = True
        raise error

    def stop_if_rejected(self, decision: Any) -> None:
        """Stop when the gate rejects; a dry run goes on, to show what publishing would change."""
        if not decision.publishes and not self.dry_run:
            self.stop(GateRejected(decision.reasons))

    def stop_if_blocking(self, check: SourcesCheck) -> None:
        """Stop on a failed critical contract rule; otherwise note the contracts and quarantine."""
        outcomes = [outcome for report in check.reports.values() for outcome in report.outcomes]
        self.ledger.note_quality(check.contract_versions, check.quarantine, outcomes)
        if check.blocking:
            self.stop(ContractViolation(check.message))

    def summary(self, status: str, counts: dict[str, Any]) -> dict[str, Any]:
        """What the flow returns (and the CLI prints) when the run published, with each stage's time
        and the process's wall time so far."""
        shown = {key: value for key, value in counts.items() if not isinstance(value, list | dict)}
        get_run_logger().info("run %s as of %s %s: %s", self.ledger.run_id, self.ledger.as_of, status, shown)
        return {
            "status": status,
            "run_id": self.ledger.run_id,
            "as_of": self.ledger.as_of.isoformat(),
            **counts,
            "targets": [store.describe() for store in self.stores],
            "stage_seconds": {stage: round(seconds, 3) for stage, seconds in STAGE_SECONDS.items()},
            "process_seconds": round(process_seconds(), 3),
        }


@contextmanager
def started_run(config: SegflowConfig, as_of: date | None, dry_run: bool = False) -> Iterator[Run]:
    """A run that holds its targets' writer slots, and whose failure, wherever it happens, is
    recorded in segmentation_runs unless the run recorded its own end (a contract or gate stop).
    Its lineage events say when it started and how it ended (COMPLETE or FAIL)."""
    quiet_expected_failures()
    STAGE_SECONDS.clear()
    run = Run(config, run_ledger(as_of), open_stores(config.publish), dry_run)
    with lineage_events(run.lineage, run.lineage_event), one_writer(config.publish), private_files():
        run.ledger.started_at = datetime.now()  # its record starts once it holds its targets
        try:
            yield run
        except Exception as error:
            if not run.recorded and not run.dry_run:
                record_failure(run, error)
            raise


@contextmanager
def backfill_lineage(config: SegflowConfig, start: date, end: date) -> Iterator[None]:
    """A backfill's own lineage events; the runs of its dates emit theirs, with it as their parent."""
    lineage = LineageEmitter(config.lineage)
    identity = run_identity(config, None, start, until=end) if lineage.enabled else None

    def event(state: str, error: BaseException | None) -> Any:
        from segflow.lineage import run_event

        return run_event(state, identity, config.lineage.namespace, error=error)

    with lineage_events(lineage, event):
        yield


def record_failure(run: Run, error: BaseException) -> None:
    """Best effort: note a failure in segmentation_runs, never masking the error itself."""
    try:
        record_run(
            run.stores, run.ledger, failure_status(error), f"{type(error).__name__}: {error}", run.facts
        )
    except Exception as recording_error:  # the store itself may be what failed
        get_run_logger().error("could not record the failed run %s: %s", run.ledger.run_id, recording_error)


def notify_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect on_failure / on_completion hook: notify when the run's status is one to hear about."""
    parameters = flow_run.parameters or {}
    config = parameters.get("config")
    try:
        if isinstance(config, dict):
            config = SegflowConfig.model_validate(config)
        config = run_config(config, parameters.get("overrides"), flow_run.deployment_id is not None)
    except (SegflowError, ValueError) as error:  # the config itself is what failed: nobody to tell
        get_logger("segflow.notify").error("notify: no notification, the run's config is unusable: %s", error)
        return
    outcome = state.result(raise_on_failure=False)
    if state.is_failed():
        status, message = failure_status(outcome), str(outcome)
    else:
        status, message = outcome.get("status", "published"), json.dumps(outcome, default=str)
    if status in config.notify.on:
        send(config.notify, notice(flow.name, flow_run, status, message))
