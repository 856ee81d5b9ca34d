"""Passwords: never in the config, taken from a Prefect Secret block, and in no output of a run."""

from __future__ import annotations

import logging
import uuid
from datetime import date

import psycopg
import pytest
from prefect.blocks.system import Secret

from segflow.config import build_config
from segflow.errors import ConfigError
from segflow.flows.segmentation import segmentation_flow
from tests.test_flow import unseen_transactions

PASSWORD = "s3cr3t-" + uuid.uuid4().hex[:8]


@pytest.mark.parametrize(
    "override",
    [
        "publish.warehouse=postgresql://app:hunter2@db:5432/x",
        "sources.transactions.uri=postgresql://app:hunter2@db:5432/x?table=t",
    ],
)
def test_a_password_in_the_config_is_refused(override):
    with pytest.raises(ConfigError, match="holds a password") as raised:
        build_config({"sources": {"transactions": {"uri": "tx.parquet"}}}, [override])
    assert "hunter2" not in str(raised.value)


@pytest.mark.usefixtures("prefect_harness")
def test_a_secret_block_password_appears_in_no_output(tmp_path, pg_uri, pg_schema, caplog):
    Secret(value=PASSWORD).save("segflow-test-pg", overwrite=True)
    transactions = tmp_path / "tx.parquet"
    unseen_transactions().to_parquet(transactions)
    config = build_config(
        {
            "sources": {
                "transactions": {
                    "uri": str(transactions),
                    "id_column": "KundenNr",
                    "timestamp_column": "Zahlungszeit",
                    "amount_column": "Betrag",
                }
            },
            "clustering": {"algorithm": "kmeans", "k": [2, 5]},
            "publish": {
                "warehouse": pg_uri,
                "schema": pg_schema,
                "password_secret": "segflow-test-pg",
                "parquet": str(tmp_path / "pq"),
                "reports": str(tmp_path / "reports"),
            },
        }
    )
    with caplog.at_level(logging.DEBUG):
        segmentation_flow(config=config, as_of=date(2026, 11, 1))

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in written) and any(p.suffix == ".parquet" for p in written)
    for path in written:
        assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in caplog.text
    with psycopg.connect(pg_uri) as connection:
        for table in ("segmentation_runs", "segment_profiles", "segment_definitions", "quarantine"):
            rows = connection.execute(f'SELECT * FROM "{pg_schema}".{table}').fetchall()
            assert PASSWORD not in repr(rows)
        assert (
            connection.execute(f'SELECT count(*) FROM "{pg_schema}".customer_segments').fetchone()[0] == 1200
        )


@pytest.mark.usefixtures("prefect_harness")
def test_the_secret_is_filled_into_the_connection_uri_and_redacted_in_messages():
    from segflow.uris import redact_uri, with_secret_password

    Secret(value="p@ss:word/" + PASSWORD).save("segflow-test-odd", overwrite=True)
    uri = with_secret_password("postgresql://publisher@db.internal:5432/dw", "segflow-test-odd")
    assert uri.startswith("postgresql://publisher:p%40ss%3Aword%2Fs3cr3t-")
    assert uri.endswith("@db.internal:5432/dw")
    assert PASSWORD not in redact_uri(uri)
