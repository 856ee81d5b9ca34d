"""Shared fixtures: the real PostgreSQL server, a Prefect test harness, small demo data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings

PG_URI = os.environ.get("SEGFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# Property tests draw the same examples on every run, so that CI passes or fails on the code, not on
# the draw; SEGFLOW_HYPOTHESIS=explore draws new ones (a failure found so becomes a plain test).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("SEGFLOW_HYPOTHESIS", "repeatable"))


@pytest.fixture(scope="session")
def pg_uri() -> str:
    """The PostgreSQL server the tests run against (a real one: .ci/run starts it)."""
    try:
        with psycopg.connect(PG_URI, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at {PG_URI} is not reachable ({error}); start it, see .ci/run")
    return PG_URI


@pytest.fixture
def pg_schema(pg_uri: str):
    """A fresh schema name, dropped with everything in it after the test."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    yield schema
    with psycopg.connect(pg_uri, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session", autouse=True)
def model_signing_key():
    """Runs sign their saved models with a test key, not a key file generated in the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGFLOW_MODEL_KEY", "segflow-tests-model-key-" + "0" * 32)
        yield


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server for the whole test session (it costs 10-15 s to start)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect_results")  # cached results stay in this session
    with (
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}),
        prefect_test_harness(server_startup_timeout=90),
    ):
        yield


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> dict[str, str]:
    """One real `prefect server start` in its own process and home for the session's `segflow`
    processes (it takes 15-40 s to start): the environment that points a child process at it."""
    home = tmp_path_factory.mktemp("prefect_server")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environment.update(
        PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1"]
    with (home / "server.log").open("w") as log:
        server = subprocess.Popen(
            [*command, "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                os.killpg(server.pid, signal.SIGKILL)
                pytest.fail(f"the Prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield {**environment, "PREFECT_API_URL": url}
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> dict[str, Path]:
    """A 3,000-customer version of the demo data, written once per test session."""
    import pyarrow.parquet as pq

    from segflow.demo import generate_demo_tables

    folder = tmp_path_factory.mktemp("small_demo")
    customers, transactions = generate_demo_tables(n_customers=3000, seed=11)
    paths = {"customers": folder / "customers.parquet", "transactions": folder / "transactions.parquet"}
    pq.write_table(customers, paths["customers"])
    pq.write_table(transactions, paths["transactions"])
    return paths


@dataclass
class Receiver:
    """A local webhook endpoint: where to post, what was posted (JSON bodies, request paths and
    headers), and the HTTP status it answers with."""

    url: str
    received: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    status: int = 204


@pytest.fixture
def receiver():
    """A real local HTTP server that keeps every JSON body posted to it."""
    endpoint = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            endpoint.received.append(json.loads(body))
            endpoint.paths.append(self.path)
            endpoint.headers.append(dict(self.headers.items()))
            self.send_response(endpoint.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/segflow"
    yield endpoint
    server.shutdown()
