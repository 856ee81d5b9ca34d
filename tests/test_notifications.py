"""What on-call sees: notifications received by a real local HTTP server, the run's artifacts, and
a flow retry that is the same run and never publishes twice."""

from __future__ import annotations

import logging
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from prefect import flow

from segflow.config import NotifyConfig, build_config
from segflow.errors import ConfigError, GateRejected, SourceError
from segflow.flows.run import run_ledger
from segflow.flows.segmentation import segmentation_flow
from segflow.ledger import RunFacts
from segflow.notify import send
from segflow.stores import open_stores
from segflow.tasks.profile import profile_segments
from segflow.tasks.publish import build_publication, publish_task

DAY = date(2026, 11, 1)
pytestmark = pytest.mark.usefixtures("prefect_harness")


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
    url, received = receiver.url, receiver.received
    config = customers_config(tmp_path, blobs(), notify={"webhook_url": url, "allow_insecure_http": True})
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
        tmp_path,
        noise,
        notify={"webhook_url": url, "allow_insecure_http": True},
        gate={"min_silhouette": 0.6},
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


WEBHOOK_TOKENS = ("T0KEN-IN-PATH-7f3a", "T0KEN-IN-QUERY-91cb")
NOTICE = {"flow": "segmentation", "status": "failed", "message": "source 'customers': no file found"}


@pytest.mark.parametrize("status", [403, 500])
def test_a_failing_webhook_logs_its_host_and_status_never_its_path_or_query(receiver, caplog, status):
    receiver.status = status
    url = receiver.url.replace("/hooks/segflow", f"/hooks/{WEBHOOK_TOKENS[0]}?token={WEBHOOK_TOKENS[1]}")
    notify = NotifyConfig(webhook_url=url, allow_insecure_http=True)
    with caplog.at_level(logging.DEBUG):
        send(notify, NOTICE)
    assert receiver.received == [NOTICE]  # delivered to the tokened path, which answered an error
    assert WEBHOOK_TOKENS[0] in receiver.paths[0] and WEBHOOK_TOKENS[1] in receiver.paths[0]
    failure = [r.getMessage() for r in caplog.records if r.getMessage().startswith("notify: webhook")]
    assert failure == [f"notify: webhook at 127.0.0.1 answered HTTP {status}"]
    assert not [token for token in WEBHOOK_TOKENS if token in caplog.text]


def test_an_unreachable_webhook_logs_its_host_and_the_kind_of_failure_only(receiver, caplog):
    url = f"http://127.0.0.1:1/hooks/{WEBHOOK_TOKENS[0]}?token={WEBHOOK_TOKENS[1]}"
    with caplog.at_level(logging.DEBUG):
        send(NotifyConfig(webhook_url=url, allow_insecure_http=True), NOTICE)
    assert "notify: webhook at 127.0.0.1 could not be reached (ConnectError)" in caplog.text
    assert not [token for token in WEBHOOK_TOKENS if token in caplog.text]


def test_the_webhook_url_can_come_from_a_secret_block_and_stays_out_of_the_config(receiver, caplog):
    from prefect.blocks.system import Secret

    url = receiver.url.replace("/hooks/segflow", f"/hooks/{WEBHOOK_TOKENS[0]}")
    Secret(value=url).save("segflow-test-webhook", overwrite=True)
    config = build_config(
        {
            "sources": {"customers": {"uri": "c.parquet"}},
            "notify": {"webhook_secret": "segflow-test-webhook", "allow_insecure_http": True},
        }
    )
    assert WEBHOOK_TOKENS[0] not in config.model_dump_json()
    with caplog.at_level(logging.DEBUG):
        send(config.notify, NOTICE)
    assert receiver.received == [NOTICE] and receiver.paths == [f"/hooks/{WEBHOOK_TOKENS[0]}"]
    assert WEBHOOK_TOKENS[0] not in caplog.text

    receiver.received.clear()
    with caplog.at_level(logging.DEBUG):  # the same URL without the explicit permission for http://
        send(NotifyConfig(webhook_secret="segflow-test-webhook"), NOTICE)
    assert receiver.received == []
    assert "notify: the webhook URL of Secret block 'segflow-test-webhook' is plain http://" in caplog.text
    with caplog.at_level(logging.DEBUG):
        send(NotifyConfig(webhook_secret="segflow-test-no-such-block"), NOTICE)
    assert "notify: Secret block 'segflow-test-no-such-block' could not be loaded" in caplog.text
    assert WEBHOOK_TOKENS[0] not in caplog.text


def test_plain_http_webhooks_are_refused_unless_explicitly_allowed():
    raw = {"sources": {"customers": {"uri": "c.parquet"}}}
    with pytest.raises(
        ConfigError, match="notify.webhook_url is plain http://.*allow_insecure_http"
    ) as raised:
        build_config(raw, ["notify.webhook_url=http://hooks.example.com/T0KEN"])
    assert raised.value.exit_code == 2 and "T0KEN" not in str(raised.value)
    allowed = ["notify.webhook_url=http://hooks.example.com/x", "notify.allow_insecure_http=true"]
    assert build_config(raw, allowed).notify.allow_insecure_http
    assert build_config(raw, ["notify.webhook_url=https://hooks.example.com/x"]).notify.webhook_url
    with pytest.raises(ConfigError, match="webhook_url or notify.webhook_secret, not both"):
        build_config(raw, ["notify.webhook_url=https://h.example.com/x", "notify.webhook_secret=hook"])
