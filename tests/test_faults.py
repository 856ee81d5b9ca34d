"""Faults injected into real `segflow run` processes, on real DuckDB, PostgreSQL and Parquet targets.

Each test starts from a copy of one good publication (as of DAY1, from a clean run), injects a
fault into a run as of DAY2 and compares what readers see afterwards with the publication before
and with a clean DAY2 run: unchanged, or equal to the clean run, never partial or duplicated.
tests/FAULTS.md lists every fault with its outcome.

The runs share one Prefect server started for this module (a fresh process would otherwise start
a temporary one, 10-15 s each). Where a fault must land in a given stage, the run is started with
a hook that pauses it there (FAULT_HOOK below); the fault itself is real: SIGKILL, a stopped or
restarted PostgreSQL server, a role's connection limit, a lock from another connection, a FIFO,
an immutable folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from prefect.states import Failed

from segflow.config import ResourcesConfig
from segflow.demo import contracts_folder
from segflow.errors import PublishError, SourceError
from segflow.retry import is_transient_failure
from segflow.sources import SourceSize, estimate_source_size, read_source
from segflow.stores import PostgresStore, TableWrite
from segflow.tables import TABLES
from segflow.tasks.ingest import (
    PROCESS_BYTES,
    check_memory_budget,
    machine_memory_bytes,
    memory_budget,
)

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)
SEGFLOW = str(Path(sys.executable).parent / "segflow")
PG_CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main"]
RUN_TIMEOUT = 300  # seconds; the machine is shared with benchmarks

# Started as `python -c FAULT_HOOK HOOKS segflow-arguments...`, HOOKS being comma-separated
# `before:MODULE:OWNER:ATTRIBUTE` or `after:...`: wraps each attribute so that its first call prints
# "FAULT HOOK: paused WHEN WHERE" and waits for a line on stdin, then runs the command line;
# `raise:...` makes the attribute raise an error segflow does not expect (a bug).
FAULT_HOOK = textwrap.dedent(
    """
    import functools, importlib, sys
    from segflow import cli

    def install(hook):
        when, where = hook.split(":", 1)
        module, owner_name, attribute = where.split(":")
        owner = getattr(importlib.import_module(module), owner_name)
        original, paused = getattr(owner, attribute), []

        @functools.wraps(original)
        def hooked(*args, **kwargs):
            if when == "raise":
                raise RuntimeError(f"injected fault in {where}")
            if when == "before" and not paused:
                pause()
            result = original(*args, **kwargs)
            if when == "after" and not paused:
                pause()
            return result

        def pause():
            paused.append(True)
            print(f"FAULT HOOK: paused {hook}", flush=True)
            sys.stdin.readline()

        setattr(owner, attribute, hooked)

    for hook in sys.argv[1].split(","):
        install(hook)
    sys.exit(cli.main(sys.argv[2:]))
    """
)

# Where each stage's work starts: the function its Prefect task runs.
STAGE_HOOKS = {
    "ingest": "before:segflow.tasks.ingest:ingest_task:fn",
    "quality": "before:segflow.tasks.quality:quality_task:fn",
    "features": "before:segflow.tasks.features:features_task:fn",
    "cluster": "before:segflow.tasks.cluster:cluster_task:fn",
}
# Publishing goes to the warehouse first, then to Parquet: this pauses between the two.
BETWEEN_TARGETS_HOOK = "before:segflow.stores.parquet:ParquetStore:publish"
# After the first staging table of a PostgreSQL publication is loaded (its connection still open).
PG_MID_LOAD_HOOK = "after:adbc_driver_manager.dbapi:Cursor:adbc_ingest"


@pytest.fixture(scope="module")
def child_environment(prefect_server) -> dict[str, str]:
    """The environment of every `segflow run` here, pointing at the session's Prefect server (each
    workspace gives its runs a Prefect home of their own, for the results they cache)."""
    return {**prefect_server, "PYTHONUNBUFFERED": "1"}


class Run:
    """A `segflow run` process, optionally paused by FAULT_HOOK, whose output is read as it comes."""

    def __init__(self, arguments: list[str], environment: dict[str, str], hooks: list[str], cwd: Path):
        command = [sys.executable, "-c", FAULT_HOOK, ",".join(hooks)] if hooks else [SEGFLOW]
        self.process = subprocess.Popen(
            [*command, "run", *arguments],
            env=environment,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None:
                self.reader.join(5)
                if text in self.output:
                    return
                pytest.fail(f"the run ended before {text!r}:\n{self.output[-4000:]}")
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"no {text!r} within {timeout} s:\n{self.output[-4000:]}")
            time.sleep(0.05)

    def resume(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill_9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.reader.join(5)

    def finish(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the run did not end within {timeout} s:\n{self.output[-4000:]}")
        self.reader.join(10)
        return code


@dataclass
class Workspace:
    """A folder with a config file, a DuckDB or PostgreSQL warehouse and a Parquet target."""

    folder: Path
    environment: dict[str, str]
    pg: tuple[str, str] | None = None  # (uri, schema) when the warehouse is PostgreSQL

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"

    def write_config(self, customers_uri: str, transactions_uri: str) -> None:
        contracts = contracts_folder()
        warehouse = f"{self.pg[0]}" if self.pg else f"duckdb:///{self.folder / 'warehouse.duckdb'}"
        config = {
            "sources": {
                "customers": {"uri": customers_uri, "contract": str(contracts / "customers.odcs.yaml")},
                "transactions": {
                    "uri": transactions_uri,
                    "contract": str(contracts / "transactions.odcs.yaml"),
                },
            },
            "features": {
                "numeric": ["age", "web_sessions_90d", "email_opens_90d"],
                "categorical": ["acquisition_channel"],
            },
            "preprocess": {"scaler": "standard"},
            "clustering": {"algorithm": "kmeans", "k": [2, 8]},
            "publish": {
                "warehouse": warehouse,
                "schema": self.pg[1] if self.pg else "segments",
                "parquet": str(self.folder / "parquet"),
                "reports": None,  # the HTML report and validation files: not what these faults are about
            },
        }
        self.config.write_text(yaml.safe_dump(config))

    def start(self, as_of: date, *settings: str, hooks: tuple[str, ...] = (), **env: str) -> Run:
        arguments = ["--config", str(self.config), "--as-of", as_of.isoformat()]
        for setting in settings:
            arguments += ["--set", setting]
        # its own Prefect home: no run may take a stage's result from another workspace's cache
        environment = {**self.environment, "PREFECT_HOME": str(self.folder / ".prefect"), **env}
        return Run(arguments, environment, list(hooks), self.folder)

    def run(self, as_of: date, *settings: str, **env: str) -> tuple[int, str]:
        run = self.start(as_of, *settings, **env)
        return run.finish(), run.output

    def warehouse_table(self, table: str) -> pa.Table:
        if self.pg:
            import adbc_driver_postgresql.dbapi as adbc

            with adbc.connect(self.pg[0]) as connection, connection.cursor() as cursor:
                cursor.execute(f'SELECT * FROM "{self.pg[1]}"."{table}"')
                return cursor.fetch_arrow_table()
        with duckdb.connect(str(self.folder / "warehouse.duckdb"), read_only=True) as connection:
            return connection.sql(f'SELECT * FROM segments."{table}"').to_arrow_table()

    def published(self) -> Published:
        """What readers of both targets see: the snapshot, and the runs recorded."""
        current = self.folder / "parquet" / "current"
        return Published(
            warehouse=rows(self.warehouse_table("customer_segments")),
            parquet=rows(pq.read_table(current / "customer_segments.parquet")),
            warehouse_runs=runs_of(self.warehouse_table("segmentation_runs")),
            parquet_runs=runs_of(pq.read_table(current / "segmentation_runs.parquet")),
        )


def rows(table: pa.Table) -> list[dict]:
    return table.sort_by("customer_id").to_pylist()


def runs_of(table: pa.Table) -> dict[str, str]:
    return dict(zip(table["run_id"].to_pylist(), table["status"].to_pylist(), strict=True))


@dataclass
class Published:
    warehouse: list[dict]
    parquet: list[dict]
    warehouse_runs: dict[str, str]
    parquet_runs: dict[str, str]

    def published_runs(self) -> tuple[set[str], set[str]]:
        def published(runs: dict[str, str]) -> set[str]:
            return {run for run, status in runs.items() if status == "published"}

        return published(self.warehouse_runs), published(self.parquet_runs)


def assert_unchanged(before: Published, after: Published, fault: str = "") -> None:
    """Readers see the same snapshot on both targets, and no run was recorded as published."""
    assert after.warehouse == before.warehouse, fault
    assert after.parquet == before.parquet, fault
    assert after.published_runs() == before.published_runs(), fault


def assert_published_once(before: Published, after: Published, clean: Published) -> None:
    """One more published run on each target, and both hold exactly what a clean run publishes."""
    for old, new in zip(before.published_runs(), after.published_runs(), strict=True):
        assert len(new - old) == 1 and old <= new
    assert after.warehouse == clean.warehouse
    assert after.parquet == clean.parquet
    assert len({row["customer_id"] for row in after.warehouse}) == len(after.warehouse)


@pytest.fixture(scope="module")
def demo_uris(small_demo) -> tuple[str, str]:
    return str(small_demo["customers"]), str(small_demo["transactions"])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, child_environment, demo_uris) -> Workspace:
    """The last good publication: a clean run as of DAY1 into DuckDB and Parquet."""
    space = Workspace(tmp_path_factory.mktemp("baseline"), child_environment)
    space.write_config(*demo_uris)
    code, output = space.run(DAY1)
    assert code == 0, output[-4000:]
    return space


@pytest.fixture(scope="module")
def clean(tmp_path_factory, baseline, demo_uris) -> Published:
    """What a clean run as of DAY2 publishes on top of the baseline."""
    space = copy_of(baseline, tmp_path_factory.mktemp("clean"))
    space.write_config(*demo_uris)
    code, output = space.run(DAY2)
    assert code == 0, output[-4000:]
    return space.published()


def copy_of(baseline: Workspace, folder: Path, pg: tuple[str, str] | None = None) -> Workspace:
    """A workspace holding the baseline publication: files copied, or loaded into a PostgreSQL schema."""
    shutil.copytree(baseline.folder / "parquet", folder / "parquet", symlinks=True)
    space = Workspace(folder, baseline.environment, pg)
    if pg is None:
        shutil.copy(baseline.folder / "warehouse.duckdb", folder / "warehouse.duckdb")
        return space
    with duckdb.connect(str(baseline.folder / "warehouse.duckdb"), read_only=True) as connection:
        names = [r[0] for r in connection.sql("SHOW TABLES FROM segments").fetchall()]
        # the derived tables (views over the others) are defined by the next publication, not copied
        writes = [
            TableWrite(name, baseline.warehouse_table(name), "all")
            for name in names
            if TABLES[name].mode != "derived"
        ]
    PostgresStore(*pg).publish(DAY1, writes)
    return space


@contextmanager
def postgres_table(pg_uri: str, schema: str, name: str, path: str):
    """A copy of a Parquet file as a PostgreSQL table, analyzed as a warehouse's tables are."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(pg_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        cursor.adbc_ingest(name, pq.read_table(path), mode="create", db_schema_name=schema)
        connection.commit()
    with psycopg.connect(pg_uri, autocommit=True) as connection:
        connection.execute(f'ANALYZE "{schema}"."{name}"')
    yield f"{pg_uri}?table={schema}.{name}"


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0


@contextmanager
def postgres_comes_back():
    """Whatever a test does to the server, it is running again afterwards."""
    try:
        yield
    finally:
        if not pg_ready():
            subprocess.run([*PG_CLUSTER, "start"], check=False, timeout=120)
        deadline = time.monotonic() + 60
        while not pg_ready() and time.monotonic() < deadline:
            time.sleep(0.5)


# ---------------------------------------------------------------- sources that fail, then answer


@pytest.mark.postgres
def test_a_source_refusing_connections_twice_is_retried_with_backoff(
    tmp_path, baseline, clean, demo_uris, pg_uri, pg_schema
):
    role = f"segflow_fault_{uuid.uuid4().hex[:8]}"
    space = copy_of(baseline, tmp_path)
    before = space.published()
    with psycopg.connect(pg_uri, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        try:
            with postgres_table(pg_uri, pg_schema, "customers", demo_uris[0]) as customers_uri:
                admin.execute(f'GRANT USAGE ON SCHEMA "{pg_schema}" TO "{role}"')
                admin.execute(f'GRANT SELECT ON "{pg_schema}".customers TO "{role}"')
                space.write_config(customers_uri.replace("postgres@", f"{role}@"), demo_uris[1])
                run = space.start(DAY2, hooks=(STAGE_HOOKS["ingest"],))
                run.wait_for("FAULT HOOK: paused")
                # the role's connections are refused ("too many connections for role") ...
                admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
                run.resume()
                run.wait_for("Retry 2/3 will start")
                admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')  # ... until the second retry
                code = run.finish()
        finally:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')

    assert code == 0, run.output[-4000:]
    retries = [line for line in run.lines if "Task run 'ingest-customers'" in line and "Retry" in line]
    assert len(retries) == 2, retries
    assert all("too many connections for role" in line for line in retries)
    assert "Retry 3/3" not in run.output
    assert_published_once(before, space.published(), clean)


# ---------------------------------------------------------------- sources that never answer


@pytest.mark.postgres
def test_a_locked_postgres_table_times_out_naming_the_source(
    tmp_path, baseline, demo_uris, pg_uri, pg_schema
):
    space = copy_of(baseline, tmp_path)
    before = space.published()
    with (
        postgres_table(pg_uri, pg_schema, "customers", demo_uris[0]) as customers_uri,
        psycopg.connect(pg_uri) as locker,
    ):
        space.write_config(customers_uri, demo_uris[1])
        locker.execute(f'LOCK TABLE "{pg_schema}".customers IN ACCESS EXCLUSIVE MODE')  # held till rollback
        started = time.monotonic()
        code, output = space.run(DAY2, "sources.customers.timeout_seconds=3")
        locker.rollback()

    assert code == 1, output[-4000:]
    assert "source 'customers'" in output and "did not answer within 3 s" in output
    assert "sources.customers.timeout_seconds" in output
    assert "Retry" not in output  # a timed-out read is not tried again
    assert time.monotonic() - started < 90
    assert_unchanged(before, space.published())
    failed = [run for run, status in space.published().warehouse_runs.items() if status == "failed"]
    assert len(failed) == 1


def test_a_fifo_nobody_writes_to_times_out_naming_the_source(tmp_path, baseline, demo_uris):
    space = copy_of(baseline, tmp_path)
    before = space.published()
    fifo = tmp_path / "customers.csv"
    os.mkfifo(fifo)
    space.write_config(str(fifo), demo_uris[1])
    code, output = space.run(DAY2, "sources.customers.timeout_seconds=3")

    assert code == 1, output[-4000:]
    assert f"source 'customers' ({fifo}) did not answer within 3 s" in output
    assert "Retry" not in output
    assert_unchanged(before, space.published())


# ---------------------------------------------------------------- the warehouse goes away mid-run


@pytest.mark.postgres
def test_postgres_stopped_between_stages_then_restarted_while_publishing_is_ridden_out(
    tmp_path, baseline, clean, demo_uris, pg_uri, pg_schema
):
    """Two faults in one run: the warehouse down between stages, and restarted mid-publication."""
    space = copy_of(baseline, tmp_path, pg=(pg_uri, pg_schema))
    space.write_config(*demo_uris)
    before = space.published()
    with postgres_comes_back():
        run = space.start(DAY2, hooks=(STAGE_HOOKS["cluster"], PG_MID_LOAD_HOOK))
        run.wait_for(f"FAULT HOOK: paused {STAGE_HOOKS['cluster']}")
        subprocess.run([*PG_CLUSTER, "stop"], check=True, timeout=120)
        run.resume()
        run.wait_for("Retry 1/3 will start")  # the run needs the warehouse's state and cannot connect
        subprocess.run([*PG_CLUSTER, "start"], check=True, timeout=120)
        run.wait_for(f"FAULT HOOK: paused {PG_MID_LOAD_HOOK}")  # a staging table loaded, connection open
        subprocess.run([*PG_CLUSTER, "restart"], check=True, timeout=120)
        run.resume()
        code = run.finish()

    assert code == 0, run.output[-4000:]
    retried = {line.split("'")[1].rsplit("-", 1)[0] for line in run.lines if "Retry 1/3" in line}
    assert {"read-publication-state", "publish"} <= retried, run.output[-4000:]
    assert "Connection refused" in run.output
    assert_published_once(before, space.published(), clean)
    with psycopg.connect(pg_uri) as connection:
        leftovers = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE '\\_stage\\_%%'",
            [pg_schema],
        ).fetchone()[0]
    assert leftovers == 0


# ---------------------------------------------------------------- the process killed


@dataclass
class Killed:
    space: Workspace
    before: Published
    after: Published


@pytest.fixture(scope="module")
def killed_between_targets(tmp_path_factory, baseline, demo_uris) -> Killed:
    """A run killed after the warehouse swapped its tables in, before the Parquet target did."""
    space = copy_of(baseline, tmp_path_factory.mktemp("killed"))
    space.write_config(*demo_uris)
    before = space.published()
    run = space.start(DAY2, hooks=(BETWEEN_TARGETS_HOOK,))
    run.wait_for("FAULT HOOK: paused")
    run.kill_9()
    return Killed(space, before, space.published())


def test_kill_9_between_the_two_targets_leaves_each_whole(killed_between_targets, clean):
    killed = killed_between_targets
    assert killed.after.warehouse == clean.warehouse  # the new publication, complete
    assert killed.after.parquet == killed.before.parquet  # the last one, untouched
    assert not list((killed.space.folder / "parquet" / "publications").glob(".*"))


def test_kill_9_in_each_stage_leaves_the_last_publication(tmp_path, baseline, demo_uris):
    """One run per stage, side by side, each on its own copy of the last publication."""
    spaces, runs = {}, {}
    for stage, hook in STAGE_HOOKS.items():
        spaces[stage] = copy_of(baseline, tmp_path / stage)
        spaces[stage].write_config(*demo_uris)
        runs[stage] = spaces[stage].start(DAY2, hooks=(hook,))
    before = baseline.published()
    for stage, run in runs.items():
        run.wait_for("FAULT HOOK: paused")
        run.kill_9()
        assert_unchanged(before, spaces[stage].published(), f"killed in {stage}")


# ---------------------------------------------------------------- folders the run may not write to


@contextmanager
def immutable(folder: Path):
    """Nobody, root included, may create, rename or remove entries in the folder (chattr +i)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_unwritable_parquet_folder_fails_the_run_and_a_rerun_recovers(
    tmp_path, baseline, clean, demo_uris
):
    space = copy_of(baseline, tmp_path)
    space.write_config(*demo_uris)
    before = space.published()
    with immutable(space.folder / "parquet" / "publications"):
        code, output = space.run(DAY2)
    assert code == 1, output[-4000:]
    assert "PermissionError" in output and str(space.folder / "parquet" / "publications") in output
    assert "Retry" not in output  # a permission problem is not retried
    failed = space.published()
    # the warehouse, published first, holds the run's complete publication; Parquet the last one
    assert failed.warehouse == clean.warehouse and failed.parquet == before.parquet
    # and its record says so: the failure of the later target does not overwrite it with 'failed'
    new_in_warehouse = failed.published_runs()[0] - before.published_runs()[0]
    assert len(new_in_warehouse) == 1 and failed.published_runs()[1] == before.published_runs()[1]

    # a second fault in the rerun: its temp folder is not writable either (Python falls back to /tmp)
    with immutable(tmp_path / "tmp") as temp:
        code, output = space.run(DAY2, TMPDIR=str(temp), TEMP=str(temp), TMP=str(temp))
    assert code == 0, output[-4000:]
    after = space.published()
    assert after.warehouse == clean.warehouse and after.parquet == clean.parquet
    assert len(after.published_runs()[1] - before.published_runs()[1]) == 1


# ---------------------------------------------------------------- the memory budget


def test_sources_over_the_memory_budget_stop_the_run_before_loading(tmp_path, baseline, demo_uris):
    space = copy_of(baseline, tmp_path)
    space.write_config(*demo_uris)
    before = space.published()
    code, output = space.run(DAY2, "resources.memory_budget_gb=0.5")

    assert code == 1, output[-4000:]
    message = output[output.index("segflow: run failed") :]
    assert "source 'transactions' is too large for the memory budget" in message
    assert "over the budget of 0.5 GB (resources.memory_budget_gb)" in message
    assert "Parquet metadata: 35,681 rows" in message
    assert "no out-of-core (Dask) path yet" in message
    assert "Task run 'ingest-" not in output  # nothing was loaded
    assert_unchanged(before, space.published())


@pytest.mark.postgres
def test_size_estimates_are_close_to_the_loaded_size(tmp_path, small_demo, pg_uri, pg_schema):
    transactions = pq.read_table(small_demo["transactions"])
    csv_path = tmp_path / "transactions.csv"
    transactions.to_pandas().to_csv(csv_path, index=False)
    database = tmp_path / "sources.duckdb"
    with duckdb.connect(str(database)) as connection:
        connection.sql("CREATE TABLE transactions AS SELECT * FROM transactions")
    with postgres_table(pg_uri, pg_schema, "transactions", str(small_demo["transactions"])) as pg_source:
        for uri in [
            str(small_demo["transactions"]),
            str(csv_path),
            f"duckdb:///{database}?table=transactions",
            pg_source,
        ]:
            estimate = estimate_source_size("transactions", uri)
            loaded = read_source("transactions", uri).nbytes
            assert 0.5 < estimate.bytes / loaded < 2, (uri, estimate, loaded)


@pytest.mark.postgres
def test_sizing_a_locked_table_never_analyzed_times_out_naming_the_source(pg_uri, pg_schema):
    with psycopg.connect(pg_uri) as locker:
        locker.execute(f'CREATE SCHEMA "{pg_schema}"')
        locker.execute(f'CREATE TABLE "{pg_schema}".customers AS SELECT 1 AS customer_id')
        locker.commit()
        locker.execute(f'LOCK TABLE "{pg_schema}".customers IN ACCESS EXCLUSIVE MODE')  # till rollback
        with pytest.raises(SourceError, match="source 'customers' .* did not answer within 1 s") as raised:
            estimate_source_size("customers", f"{pg_uri}?table={pg_schema}.customers", timeout_seconds=1)
        locker.rollback()
    assert not raised.value.transient


def test_the_default_budget_is_half_the_machine_and_an_overrun_names_sizes_and_budget():
    budget, text = memory_budget(ResourcesConfig())
    assert budget == machine_memory_bytes() / 2 and "half of this machine" in text
    sizes = {"customers": SourceSize(2 * 10**9, "pg_class"), "transactions": SourceSize(10**9, "CSV")}
    assert check_memory_budget(sizes, 20e9, "20 GB") == pytest.approx(PROCESS_BYTES + 4.5 * 3e9)
    with pytest.raises(SourceError) as raised:
        check_memory_budget(sizes, 8e9, "8 GB")
    message = str(raised.value)
    assert "source 'customers' is too large" in message and "over the budget of 8 GB" in message
    assert "'customers' 2.00 GB once loaded (pg_class)" in message and "Dask" in message


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (SourceError("refused", transient=True), True),
        (SourceError("no such table"), False),
        (PublishError("cannot connect", transient=True), True),
        (TimeoutError("took too long"), False),
        (PermissionError(13, "Permission denied"), False),
        (ConnectionResetError(104, "Connection reset by peer"), True),
    ],
)
def test_which_failures_the_io_tasks_retry(error, retried):
    assert is_transient_failure(None, None, Failed(data=error)) is retried


# Last in the file, so that the killed run's writer slot has had time to expire.
def test_a_rerun_after_kill_9_waits_for_the_slot_and_publishes_once(killed_between_targets, clean):
    killed = killed_between_targets
    code, output = killed.space.run(DAY2)
    assert code == 0, output[-4000:]
    after = killed.space.published()
    assert after.warehouse == clean.warehouse and after.parquet == clean.parquet
    warehouse_new = after.published_runs()[0] - killed.before.published_runs()[0]
    parquet_new = after.published_runs()[1] - killed.before.published_runs()[1]
    assert len(warehouse_new) == 2 and len(parquet_new) == 1  # the killed run's, and the rerun's


# ---------------------------------------------------------------- expected outcomes, read by on-call


def empty_parquet(folder: Path, like: str) -> str:
    path = folder / "empty.parquet"
    pq.write_table(pq.read_table(like).slice(0, 0), path)
    return str(path)


def garbage_parquet(folder: Path, like: str) -> str:
    path = folder / "garbage.parquet"
    path.write_bytes(b"PAR1 this is not a Parquet file " * 100)
    return str(path)


def customers_without_ids(folder: Path, like: str) -> str:
    path = folder / "no_ids.parquet"
    table = pq.read_table(like)
    index = table.schema.get_field_index("customer_id")
    pq.write_table(table.set_column(index, "customer_id", pa.nulls(table.num_rows, pa.string())), path)
    return str(path)


@pytest.mark.parametrize(
    ("customers", "settings", "code", "message"),
    [
        (customers_without_ids, (), 3, "critical data-contract rule(s) failed"),
        (None, ("gate.min_silhouette=0.99",), 4, "validation gate rejected the segmentation"),
        (None, ("clustering.algorithm=kmeanz",), 2, "(got 'kmeanz')"),
        (lambda folder, like: str(folder / "missing.parquet"), (), 1, "no file found at"),
        (empty_parquet, (), 1, "has no rows"),
        (garbage_parquet, (), 1, "is not a readable Parquet file"),
    ],
    ids=["contract", "gate", "config", "missing-source", "empty-source", "unreadable-source"],
)
def test_expected_failures_print_their_message_and_no_traceback(
    tmp_path, baseline, demo_uris, customers, settings, code, message
):
    space = copy_of(baseline, tmp_path)
    customers_uri = demo_uris[0] if customers is None else customers(tmp_path, demo_uris[0])
    space.write_config(customers_uri, demo_uris[1])
    exit_code, output = space.run(DAY2, *settings)
    assert exit_code == code, output[-3000:]
    assert message in output
    assert f"segflow: run failed (exit {code})" in output or code == 2
    assert "Traceback" not in output, output[-3000:]


def test_an_unexpected_error_keeps_its_traceback(tmp_path, baseline, demo_uris):
    space = copy_of(baseline, tmp_path)
    space.write_config(*demo_uris)
    run = space.start(DAY2, hooks=("raise:segflow.tasks.features:features_task:fn",))
    assert run.finish() == 1
    assert "Traceback" in run.output and "RuntimeError: injected fault" in run.output
