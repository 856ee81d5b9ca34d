"""What on-call sees: notifications received by a real local HTTP server, the run's artifacts, and
a flow retry that is the same run and never publishes twice."""

from __future__ import annotations

import json
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from prefect import flow

from segflow.config import build_config
from segflow.errors import GateRejected, SourceError
from segflow.flows.run import run_ledger
from segflow.flows.segmentation import segmentation_flow
from segflow.ledger import RunFacts
from segflow.stores import open_stores
from segflow.tasks.profile import profile_segments
from segflow.tasks.publish import build_publication, publish_task

DAY = date(2026, 11, 1)
pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def receiver():
    """A local HTTP server that keeps every JSON body posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/segflow", received
    server.shutdown()


def customers_config(tmp_path, frame: pd.DataFrame, **overrides):
    path = tmp_path / "customers.parquet"
    frame.to_parquet(path)
    raw = {
        "sources": {"customers": {"uri": str(path), "id_column": "account"}},
        "clustering": {"algorithm": "kmeans", "k": [2, 4]},
        "publish": {"warehouse": f"duckdb:///{tmp_path / 'w.duckdb'}", "parquet": None, "reports": None},
    }
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return build_config(raw)


def blobs(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centre = rng.integers(0, 3, size=n)
    return pd.DataFrame(
        {
            "account": np.arange(n) + 1,
            "visits": np.array([1.0, 10.0, 20.0])[centre] + rng.normal(0, 0.5, n),
            "spend": np.array([5.0, 50.0, 10.0])[centre] + rng.normal(0, 0.5, n),
        }
    )


def test_failures_and_rejections_notify_the_webhook_and_publications_do_not(tmp_path, receiver):
    url, received = receiver
    config = customers_config(tmp_path, blobs(), notify={"webhook_url": url})
    segmentation_flow(config=config, as_of=DAY)
    assert received == []  # a published run is not news by default

    missing = config.model_copy(deep=True)
    missing.sources.customers.uri = str(tmp_path / "absent.parquet")
    with pytest.raises(SourceError):
        segmentation_flow(config=missing, as_of=DAY)
    assert len(received) == 1
    failed = received[0]
    assert failed["status"] == "failed" and failed["flow"] == "segmentation"
    assert "source 'customers'" in failed["message"] and failed["as_of"] == DAY.isoformat()

    uniform = np.random.default_rng(3).uniform(size=(600, 4))  # no structure to find
    noise = pd.DataFrame({"account": np.arange(600) + 1, **{c: uniform[:, i] for i, c in enumerate("abcd")}})
    rejected_config = customers_config(
        tmp_path, noise, notify={"webhook_url": url}, gate={"min_silhouette": 0.6}
    )
    with pytest.raises(GateRejected):
        segmentation_flow(config=rejected_config, as_of=date(2026, 11, 2))
    assert [n["status"] for n in received] == ["failed", "rejected"]
    assert "silhouette" in received[1]["message"]


def test_a_run_leaves_a_summary_artifact_with_the_verdict_segments_and_k_search(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    config = customers_config(tmp_path, blobs(seed=4))
    summary = segmentation_flow(config=config, as_of=DAY)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["segmentation-report"]))
        )
    mine = [a for a in artifacts if summary["run_id"] in (a.description or "")]
    assert len(mine) == 1
    markdown = mine[0].data
    assert f"# Segmentation {DAY}: published" in markdown
    assert "Gate: all checks passed" in markdown
    assert markdown.count("| seg-000") == summary["segments"]
    assert "| k | silhouette |" in markdown and "| 3 |" in markdown


def test_a_flow_retry_is_the_same_run_and_a_committed_publish_is_not_redone(tmp_path):
    config = customers_config(tmp_path, blobs(), publish={"parquet": str(tmp_path / "pq")})
    stores = open_stores(config.publish)
    frame = blobs()
    labels = (frame["visits"] > 5).astype(int).to_numpy() + (frame["spend"] > 30).astype(int).to_numpy()
    attempts: list[str] = []

    @flow(retries=1, retry_delay_seconds=0)
    def publishes_then_fails_once() -> str:
        ledger = run_ledger(DAY)
        ledger.id_type = pa.int64()
        attempts.append(ledger.run_id)
        profiles = profile_segments(frame[["visits", "spend"]], labels, ["visits", "spend"], [])
        publication = build_publication(frame["account"], labels, profiles, stores[0].read_state(DAY), ledger)
        publish_task(stores, publication, ledger, RunFacts())
        if len(attempts) == 1:
            raise RuntimeError("the flow fails after its publish committed")
        return ledger.run_id

    run_id = publishes_then_fails_once()
    assert attempts == [run_id, run_id]  # the retry is the same run
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        runs = connection.sql("SELECT run_id, status FROM segments.segmentation_runs").fetchall()
    assert runs == [(run_id, "published")]
    assert len(list((tmp_path / "pq" / "publications").iterdir())) == 1  # Parquet was written once


def test_segment_names_from_column_names_are_shown_literally_in_the_markdown_summary():
    from segflow.tasks.report import markdown_text

    hostile = "spend | [click](http://x.invalid) <b>*"
    escaped = markdown_text(hostile)
    assert "|" not in escaped.replace("\\|", "") and "](" not in escaped.replace("\\](", "")
    assert escaped.replace("\\", "") == hostile
