"""Reading sources: Parquet, CSV, DuckDB and PostgreSQL, and clear errors for unreadable ones."""

from __future__ import annotations

import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segflow.errors import ConfigError, SourceError
from segflow.sources import estimate_source_size, read_source
from segflow.uris import redact_uri

FRAME = pd.DataFrame({"client": ["a", "b", "c"], "spend": [1.5, 2.0, 3.25]})


def test_parquet_file_and_glob(tmp_path):
    pq.write_table(pa.Table.from_pandas(FRAME), tmp_path / "part-1.parquet")
    pq.write_table(pa.Table.from_pandas(FRAME), tmp_path / "part-2.parquet")
    assert read_source("tx", str(tmp_path / "part-1.parquet")).num_rows == 3
    assert read_source("tx", str(tmp_path / "part-*.parquet")).num_rows == 6


def test_csv_with_semicolons_is_sniffed(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("client;spend\na;1,5\nb;2\n")
    table = read_source("customers", str(path))
    assert table.column_names == ["client", "spend"]
    assert table.num_rows == 2


def test_latin1_csv_needs_its_encoding(tmp_path):
    path = tmp_path / "kunden.csv"
    path.write_bytes("client;name\n1;Müller\n2;Straße\n".encode("latin-1"))
    with pytest.raises(SourceError, match="not valid text in encoding utf-8.*set the source's 'encoding'"):
        read_source("customers", str(path))
    table = read_source("customers", str(path), encoding="latin-1")
    assert table.column("name").to_pylist() == ["Müller", "Straße"]


def test_duckdb_table(tmp_path):
    path = tmp_path / "in.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute("CREATE SCHEMA crm")
        connection.execute("CREATE TABLE crm.people AS SELECT * FROM FRAME")
    table = read_source("customers", f"duckdb:///{path}?table=crm.people")
    assert table.to_pandas().equals(FRAME)


def test_postgres_table(pg_uri, pg_schema):
    with psycopg.connect(pg_uri, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{pg_schema}"')
        connection.execute(f'CREATE TABLE "{pg_schema}".people (client text, spend double precision)')
        connection.execute(f"INSERT INTO \"{pg_schema}\".people VALUES ('a', 1.5), ('b', 2.0)")
    table = read_source("customers", f"{pg_uri}?table={pg_schema}.people")
    assert table.to_pydict() == {"client": ["a", "b"], "spend": [1.5, 2.0]}
    # the URI's other options reach the driver: this server has no certificate a client could verify
    same = read_source("customers", f"{pg_uri}?table={pg_schema}.people&sslmode=disable")
    assert same.num_rows == 2
    with pytest.raises(SourceError):
        read_source("customers", f"{pg_uri}?sslmode=verify-full&table={pg_schema}.people", timeout_seconds=20)


@pytest.mark.parametrize(
    ("make", "uri", "error", "message"),
    [
        (None, "{d}/absent.parquet", SourceError, "source 'tx': no file found at .*absent.parquet"),
        ("not parquet", "{d}/bad.parquet", SourceError, "not a readable Parquet file"),
        (b"\xff\xfe\x00bad\x00", "{d}/bad.csv", SourceError, "could not be read as CSV"),
        (None, "{d}/data.xlsx", ConfigError, "cannot tell the format"),
        (None, "duckdb:///{d}/absent.duckdb?table=t", SourceError, "DuckDB file .* not found"),
        (None, "duckdb:///{d}/x.duckdb?table=a;drop table b", ConfigError, "not a plain identifier"),
        (None, "duckdb:///{d}/x.duckdb", ConfigError, "needs \\?table=NAME"),
    ],
)
def test_unreadable_sources_fail_clearly(tmp_path, make, uri, error, message):
    uri = uri.format(d=tmp_path)
    if make is not None:
        path = tmp_path / uri.rsplit("/", 1)[1]
        path.write_bytes(make if isinstance(make, bytes) else make.encode())
    with pytest.raises(error, match=message):
        read_source("tx", uri)


def test_empty_table_is_an_error(tmp_path):
    pq.write_table(pa.Table.from_pandas(FRAME.iloc[0:0]), tmp_path / "empty.parquet")
    with pytest.raises(SourceError, match="source 'tx' .* has no rows"):
        read_source("tx", str(tmp_path / "empty.parquet"))


def test_unreachable_postgres_is_transient_and_hides_the_password():
    uri = "postgresql://user:s3cret@127.0.0.1:1/db?table=t"
    with pytest.raises(SourceError) as raised:
        read_source("tx", uri)
    assert raised.value.transient
    assert "s3cret" not in str(raised.value)
    assert redact_uri(uri) == "postgresql://user:***@127.0.0.1:1/db?table=t"


def test_a_duckdb_source_cannot_read_files_outside_its_database(tmp_path):
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOPSECRET-42\n")
    path = tmp_path / "in.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"CREATE VIEW leak AS SELECT content AS customer_id FROM read_text('{secret}')")
        connection.execute(f"CREATE VIEW leak_csv AS SELECT * FROM read_csv('{secret}')")
        connection.execute("CREATE TABLE people AS SELECT * FROM FRAME")
        connection.execute("CREATE VIEW big_spenders AS SELECT * FROM people WHERE spend > 1.5")
    for view in ("leak", "leak_csv"):
        for read in (read_source, estimate_source_size):
            with pytest.raises(
                SourceError, match=f"source 'customers': \"{view}\" in .*in.duckdb reads"
            ) as raised:
                read("customers", f"duckdb:///{path}?table={view}")
            assert "TOPSECRET" not in str(raised.value)
            assert "without file or network access" in str(raised.value)
    assert read_source("customers", f"duckdb:///{path}?table=people").to_pandas().equals(FRAME)
    assert read_source("customers", f"duckdb:///{path}?table=big_spenders").num_rows == 2


def csv_with(path, odd_lines: dict[int, str], rows: int = 200_000) -> None:
    lines = ["customer_id,note,spend"] + [f"{i},short,{i}.5" for i in range(1, rows)]
    for position, line in sorted(odd_lines.items()):
        lines.insert(position, line)
    path.write_text("\n".join(lines) + "\n")


def test_a_csv_line_of_2_mb_is_read_even_across_pyarrows_blocks(tmp_path):
    path = tmp_path / "orders.csv"
    csv_with(path, {60_000: "9999," + "x" * 2_000_000 + ",1.5"})  # past the first 1 MB block
    table = read_source("transactions", str(path))
    assert table.num_rows == 200_000
    notes = table.column("note").to_pylist()
    assert len(notes[59_999]) == 2_000_000 and notes[0] == "short"


def test_csv_lines_that_cannot_be_parsed_fail_naming_their_count_never_their_text(tmp_path):
    path = tmp_path / "orders.csv"
    csv_with(path, {500: "7,Jane Doe jane@example.com,1.5,extra", 150_000: "8"})
    with pytest.raises(SourceError) as raised:
        read_source("transactions", str(path))
    message = str(raised.value)
    assert "source 'transactions': 2 lines of" in message and "do not have the header's 3 fields" in message
    assert "jane@example.com" not in message
