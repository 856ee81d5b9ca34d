"""OpenLineage events: received by a real local HTTP endpoint (a published run, a contract-failed run),
written to a file (a backfill and its dates, a scoring run), and never a reason for a run to fail."""

from __future__ import annotations

import json
import logging
import os
from datetime import date
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest

from segflow.config import LineageConfig, build_config
from segflow.errors import ContractViolation
from segflow.flows.backfill import backfill_flow
from segflow.flows.scoring import scoring_flow
from segflow.flows.segmentation import segmentation_flow
from segflow.lineage import postgres_dataset, run_event, source_dataset
from segflow.lineage_delivery import LineageEmitter, RunIdentity, lineage_events
from tests.helpers import three_groups

pytestmark = pytest.mark.usefixtures("prefect_harness")
DAY = date(2026, 11, 1)
PG_PASSWORD = "pg-Pa55word-never-shown"
LINEAGE_TOKEN = "lineage-T0ken-never-shown"


def write_contract(folder) -> str:
    contract = {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": "accounts",
        "name": "accounts",
        "version": "1.2.0",
        "status": "active",
        "schema": [
            {
                "name": "accounts",
                "properties": [
                    {"name": "account", "logicalType": "integer", "required": True},
                    {
                        "name": "spend",
                        "logicalType": "number",
                        "quality": [{"metric": "nullValues", "mustBe": 0, "severity": "warning"}],
                    },
                ],
            }
        ],
    }
    path = folder / "accounts.odcs.yaml"
    path.write_text(json.dumps(contract))
    return str(path)


def lineage_config(tmp_path, frame: pd.DataFrame, lineage: dict, warehouse: str, **publish):
    source = tmp_path / "accounts.parquet"
    frame.to_parquet(source)
    return build_config(
        {
            "sources": {
                "customers": {
                    "uri": str(source),
                    "id_column": "account",
                    "contract": write_contract(tmp_path),
                }
            },
            "clustering": {"algorithm": "kmeans", "k": [2, 4]},
            "publish": {"warehouse": warehouse, "parquet": str(tmp_path / "pq"), "reports": None, **publish},
            "lineage": lineage,
        }
    )


def facet_tags(event: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in event["run"]["facets"]["tags"]["tags"]}


def test_a_published_and_a_contract_failed_run_send_their_events_to_the_lineage_endpoint(
    tmp_path, receiver, pg_uri, pg_schema, monkeypatch
):
    from prefect.blocks.system import Secret

    Secret(value=PG_PASSWORD).save("segflow-test-lineage-pg", overwrite=True)
    monkeypatch.setenv("SEGFLOW_LINEAGE_TOKEN", LINEAGE_TOKEN)
    server = urlsplit(receiver.url)
    lineage = {
        "transport": "http",
        "url": f"http://{server.netloc}",
        "namespace": "crm-nightly",
        "allow_insecure_http": True,
    }
    warehouse = f"{pg_uri}?sslmode=disable&application_name=segflow-test"
    secret = {"schema": pg_schema, "password_secret": "segflow-test-lineage-pg"}
    config = lineage_config(tmp_path, three_groups(600), lineage, warehouse, **secret)

    summary = segmentation_flow(config=config, as_of=DAY)

    start, complete = receiver.received
    assert [start["eventType"], complete["eventType"]] == ["START", "COMPLETE"]
    assert set(receiver.paths) == {"/api/v1/lineage"}
    assert {h["Authorization"] for h in receiver.headers} == {f"Bearer {LINEAGE_TOKEN}"}
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert (
        facet_tags(complete).items()
        >= {"segflow.run_id": summary["run_id"], "segflow.as_of": "2026-11-01"}.items()
    )
    assert complete["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith("2026-11-01T00:00:00")
    assert complete["job"] == {**complete["job"], "namespace": "crm-nightly", "name": "segmentation"}

    (source,) = complete["inputs"]
    assert (source["namespace"], source["name"]) == ("file", str(tmp_path / "accounts.parquet"))
    assert source["inputFacets"]["inputStatistics"]["rowCount"] == 600
    assert [f["name"] for f in source["facets"]["schema"]["fields"]] == ["account", "visits", "spend"]
    assertions = source["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert "account not null" in {a["assertion"] for a in assertions}
    assert all(a["success"] for a in assertions) and len(assertions) >= 3

    outputs = {(o["namespace"], o["name"]): o.get("outputFacets", {}) for o in complete["outputs"]}
    in_postgres = ("postgres://127.0.0.1:5432", f"test.{pg_schema}.customer_segments")
    in_parquet = ("file", str(tmp_path / "pq" / "current" / "customer_segments.parquet"))
    assert outputs[in_postgres]["outputStatistics"]["rowCount"] == summary["customers"] == 600
    assert outputs[in_parquet]["outputStatistics"]["rowCount"] == 600
    changes = ("file", str(tmp_path / "pq" / "current" / "segment_changes"))
    assert outputs[changes]["outputStatistics"]["rowCount"] == summary["changes"]
    assert ("postgres://127.0.0.1:5432", f"test.{pg_schema}.segment_membership_history") in outputs
    assert start["outputs"] == []

    broken = three_groups(600, seed=1).astype({"account": "float64"})
    broken.loc[[3, 30, 300], "account"] = np.nan
    failing = lineage_config(tmp_path, broken, lineage, warehouse, **secret)
    with pytest.raises(ContractViolation):
        segmentation_flow(config=failing, as_of=date(2026, 11, 2))

    start, fail = receiver.received[2:]
    assert [start["eventType"], fail["eventType"]] == ["START", "FAIL"]
    assert fail["run"]["runId"] == start["run"]["runId"] != complete["run"]["runId"]
    assert fail["outputs"] == []
    assert "ContractViolation" in fail["run"]["facets"]["errorMessage"]["message"]
    (source,) = fail["inputs"]
    assert source["inputFacets"]["inputStatistics"]["rowCount"] == 600
    (failed,) = [a for a in source["inputFacets"]["dataQualityAssertions"]["assertions"] if not a["success"]]
    assert (failed["assertion"], failed["column"], failed["severity"]) == (
        "account not null",
        "account",
        "critical",
    )
    assert failed["actual"] == "3 of 600 rows fail"

    sent = json.dumps(receiver.received)
    for secret in (PG_PASSWORD, LINEAGE_TOKEN, "sslmode", "application_name", "postgres@"):
        assert secret not in sent


def test_dataset_names_carry_host_port_database_and_table_only():
    uri = "postgresql://reader@db.example.com:6543/shop?table=sales.orders&sslmode=verify-full&passfile=/k"
    assert source_dataset(uri) == ("postgres://db.example.com:6543", "shop.sales.orders")
    assert postgres_dataset("postgresql://db/crm?host=/run/postgresql", "customers") == (
        "postgres://db:5432",
        "crm.public.customers",
    )
    assert postgres_dataset("postgresql:///crm?host=/run/postgresql&port=5433", "s.t") == (
        "postgres://localhost:5433",
        "crm.s.t",
    )
    assert source_dataset("duckdb:///data/shop.duckdb?table=orders") == (
        f"duckdb://{os.path.abspath('data/shop.duckdb')}",
        "main.orders",
    )


def test_a_lineage_endpoint_that_is_down_leaves_a_warning_and_the_run_publishes(tmp_path, receiver, caplog):
    closed = urlsplit(receiver.url)
    receiver.status = 503  # answering, but failing
    lineage = {"transport": "http", "url": f"http://{closed.netloc}"}
    config = lineage_config(tmp_path, three_groups(600), lineage, f"duckdb:///{tmp_path / 'w.duckdb'}")
    with caplog.at_level(logging.WARNING, logger="prefect.segflow.lineage"):
        summary = segmentation_flow(config=config, as_of=DAY)
    assert summary["status"] == "published"
    assert len(receiver.received) == 2 * 3  # START and COMPLETE, each tried three times
    warnings = [r.getMessage() for r in caplog.records if r.name == "prefect.segflow.lineage"]
    assert len(warnings) == 2 and all("not delivered to 127.0.0.1" in w for w in warnings)

    unreachable = LineageEmitter(LineageConfig(transport="http", url="http://127.0.0.1:9"))
    identity = RunIdentity("segmentation", "0193a3d2-0000-7000-8000-000000000000", "r", DAY)
    events = lineage_events(unreachable, lambda state, error: run_event(state, identity, "segflow"))
    with caplog.at_level(logging.WARNING, logger="prefect.segflow.lineage"), events:
        pass
    assert sum("not delivered" in r.getMessage() for r in caplog.records) == 4


def test_a_backfill_and_a_scoring_run_write_their_events_to_the_lineage_file(tmp_path):
    events_file = tmp_path / "lineage" / "events.jsonl"
    events_file.parent.mkdir()
    lineage = {"transport": "file", "path": str(events_file)}
    config = lineage_config(tmp_path, three_groups(600), lineage, f"duckdb:///{tmp_path / 'w.duckdb'}")

    backfill_flow(start=DAY, end=date(2026, 11, 2), config=config)
    scoring_flow(config=config, as_of=date(2026, 11, 3))

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    seen = [(e["job"]["name"], e["eventType"]) for e in events]
    assert seen == [
        ("backfill", "START"),
        ("segmentation", "START"),
        ("segmentation", "COMPLETE"),
        ("segmentation", "START"),
        ("segmentation", "COMPLETE"),
        ("backfill", "COMPLETE"),
        ("scoring", "START"),
        ("scoring", "COMPLETE"),
    ]
    backfill = events[0]["run"]
    assert backfill["facets"]["nominalTime"]["nominalEndTime"].startswith("2026-11-03T00:00:00")
    for child in (events[2], events[4]):
        assert child["run"]["facets"]["parent"]["run"]["runId"] == backfill["runId"]
        assert child["run"]["facets"]["parent"]["job"]["name"] == "backfill"
    scored = {(o["name"].rsplit(".", 1)[-1]): o for o in events[7]["outputs"] if o["namespace"] != "file"}
    assert scored["customer_segments"]["outputFacets"]["outputStatistics"]["rowCount"] == 600
    assert "segment_profiles" not in scored  # scoring rewrites the snapshot and the change feed only
    assert events[7]["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == 600


def test_lineage_is_off_by_default_and_an_endpoint_token_never_goes_in_the_config():
    assert LineageEmitter(LineageConfig()).enabled is False
    with pytest.raises(ValueError, match="credentials"):
        LineageConfig(transport="http", url="https://user:secret@lineage.example.com")
    with pytest.raises(ValueError, match="credentials"):
        LineageConfig(transport="http", url="https://lineage.example.com/?api_key=secret")
    with pytest.raises(ValueError, match="in clear"):
        LineageConfig(transport="http", url="http://lineage.example.com", token_secret="lineage-token")
