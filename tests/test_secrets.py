"""Passwords: never in the config, taken from a Prefect Secret block, and in no output of a run."""

from __future__ import annotations

import logging
import uuid
from datetime import date

import psycopg
import pyarrow as pa
import pytest
import yaml
from prefect.blocks.system import Secret

from segflow.cli import main
from segflow.config import build_config
from segflow.errors import ConfigError, SourceError
from segflow.flows.segmentation import segmentation_flow
from segflow.uris import redact_uri
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


# libpq options whose value is a secret; passfile, sslkey and sslcert name files and stay allowed
@pytest.mark.parametrize("option", ["password", "sslpassword", "PASSWORD", "pass%77ord"])
@pytest.mark.parametrize("key", ["publish.warehouse", "sources.transactions.uri"])
def test_password_options_in_a_uri_are_refused_naming_the_key_and_the_option(key, option):
    uri = f"postgresql://app@db:5432/x?table=t&sslmode=require&{option}=hunter2"
    with pytest.raises(ConfigError) as raised:
        build_config({"sources": {"transactions": {"uri": "tx.parquet"}}}, [f"{key}={uri}"])
    message = str(raised.value)
    assert raised.value.exit_code == 2
    assert f"config key '{key}'" in message and f"option '{option.lower().replace('%77', 'w')}'" in message
    assert "PGPASSWORD" in message and "~/.pgpass" in message and "Secret block" in message
    assert "hunter2" not in message


def test_file_options_and_other_options_of_a_uri_are_accepted():
    uri = "postgresql://app@db:5432/x?table=t&sslmode=verify-full&passfile=/run/pgpass&sslkey=/run/key.pem"
    assert build_config({"sources": {"transactions": {"uri": uri}}}).sources.transactions.uri == uri


def test_a_config_file_with_a_password_option_exits_2_naming_the_key(tmp_path, capsys):
    config = tmp_path / "segflow.yaml"
    uri = "postgresql://app@db:5432/shop?sslpassword=hunter2"
    config.write_text(
        yaml.safe_dump({"sources": {"customers": {"uri": "c.parquet"}}, "publish": {"warehouse": uri}})
    )
    assert main(["run", "--config", str(config)]) == 2
    shown = capsys.readouterr()
    assert "publish.warehouse" in shown.err and "sslpassword" in shown.err
    assert "hunter2" not in shown.out + shown.err


def test_shown_uris_mask_every_option_but_the_table_and_the_password():
    uri = "postgresql://app:pw@db:5432/shop?table=sales.orders&sslmode=require&application_name=tok&sslkey=/k"
    shown = "postgresql://app:***@db:5432/shop?table=sales.orders&sslmode=***&application_name=***&sslkey=***"
    assert redact_uri(uri) == shown
    assert redact_uri("postgresql://app@db/shop?sslmode=require") == "postgresql://app@db/shop?sslmode=***"
    assert redact_uri("duckdb:///w.duckdb?table=t") == "duckdb:///w.duckdb?table=t"
    assert redact_uri("data/orders-?.csv") == "data/orders-?.csv"  # a glob, not a URI: shown as given
    assert redact_uri("postgresql://app@[::1/x?password=tok") == "postgresql://***"  # unparsable: hidden


TOKENS = {"source": "srcT0K-" + uuid.uuid4().hex[:8], "warehouse": "whT0K-" + uuid.uuid4().hex[:8]}


@pytest.mark.usefixtures("prefect_harness")
def test_planted_uri_options_appear_in_no_log_result_record_or_webhook_body(
    tmp_path, pg_uri, pg_schema, receiver, caplog
):
    import adbc_driver_postgresql.dbapi as adbc

    orders = pa.Table.from_pandas(unseen_transactions(), preserve_index=False)
    with adbc.connect(pg_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{pg_schema}"')
        cursor.adbc_ingest("zahlungen", orders, mode="create", db_schema_name=pg_schema)
        cursor.adbc_ingest("leer", orders.slice(0, 0), mode="create", db_schema_name=pg_schema)
        connection.commit()
    source = f"{pg_uri}?table={pg_schema}.zahlungen&application_name={TOKENS['source']}"
    raw = {
        "sources": {
            "transactions": {
                "uri": source,
                "id_column": "KundenNr",
                "timestamp_column": "Zahlungszeit",
                "amount_column": "Betrag",
            }
        },
        "clustering": {"algorithm": "kmeans", "k": [2, 5]},
        "publish": {
            "warehouse": f"{pg_uri}?application_name={TOKENS['warehouse']}",
            "schema": pg_schema,
            "parquet": str(tmp_path / "pq"),
            "reports": str(tmp_path / "reports"),
        },
        "notify": {"webhook_url": receiver.url, "allow_insecure_http": True, "on": ["published", "failed"]},
    }
    with caplog.at_level(logging.DEBUG):
        result = segmentation_flow(config=build_config(raw), as_of=date(2026, 11, 1))
        empty = build_config(raw, [f"sources.transactions.uri={source.replace('zahlungen', 'leer')}"])
        with pytest.raises(SourceError, match="has no rows") as failed:
            segmentation_flow(config=empty, as_of=date(2026, 11, 2))

    assert [notice["status"] for notice in receiver.received] == ["published", "failed"]
    assert "?application_name=*** (schema" in repr(result)  # the target is shown, its option masked
    shown = {
        "logs": caplog.text,
        "result": repr(result),
        "error": str(failed.value),
        "webhook bodies": repr(receiver.received),
    }
    for path in tmp_path.rglob("*"):
        if path.is_file():
            shown[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    with psycopg.connect(pg_uri) as connection:
        for table in ("segmentation_runs", "segment_profiles", "segment_definitions", "quarantine"):
            shown[table] = repr(connection.execute(f'SELECT * FROM "{pg_schema}".{table}').fetchall())
    assert "ingest: source 'transactions'" in shown["logs"] and len(shown) > 6
    leaks = {where: token for where, text in shown.items() for token in TOKENS.values() if token in text}
    assert leaks == {}
