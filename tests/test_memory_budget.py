"""The memory budget against files whose size is hidden: a gzip of several members, a Parquet footer
that lies, columns that expand when decoded. None is under-counted; an oversized one is stopped
while it is being counted, before anything is loaded."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segflow.config import ResourcesConfig, SourcesConfig
from segflow.errors import SourceError
from segflow.sources import estimate_source_size, read_source
from segflow.tasks.ingest import PROCESS_BYTES, WORKING_COPIES, sources_within_budget

ROW = b"4711,2026-11-01 10:00:00,19.99,web\n"


def two_member_gzip(path, text_bytes: int) -> tuple[int, int]:
    """A .csv.gz of a large first member and a tiny last one (whose trailer alone gives 'the' size);
    its text's bytes and rows."""
    rows = text_bytes // len(ROW)
    text = b"customer_id,order_ts,amount,channel\n" + ROW * rows
    path.write_bytes(gzip.compress(text) + gzip.compress(ROW))
    return len(text) + len(ROW), rows + 1


def budget_leaving(source_bytes: float) -> ResourcesConfig:
    """A budget that leaves `source_bytes` for the sources once the process is counted."""
    return ResourcesConfig(memory_budget_gb=(PROCESS_BYTES + WORKING_COPIES * source_bytes) / 1e9)


def transactions(uri: str) -> SourcesConfig:
    return SourcesConfig(transactions={"uri": uri, "id_column": "customer_id"})


def test_a_multi_member_gzip_is_sized_by_everything_it_decompresses_to(tmp_path):
    path = tmp_path / "orders.csv.gz"
    text_bytes, rows = two_member_gzip(path, 24_000_000)
    assert path.stat().st_size < 200_000  # 24 MB of text in a small file
    assert estimate_source_size("transactions", str(path)).bytes == text_bytes
    assert read_source("transactions", str(path)).num_rows == rows


def test_a_gzip_bomb_is_stopped_by_the_budget_while_it_is_counted(tmp_path):
    path = tmp_path / "orders.csv.gz"
    two_member_gzip(path, 24_000_000)
    resources = budget_leaving(10e6)
    with pytest.raises(SourceError) as raised:
        sources_within_budget(transactions(str(path)), resources)
    message = str(raised.value)
    assert "source 'transactions' is too large for the memory budget" in message
    assert f"over the budget of {resources.memory_budget_gb:g} GB (resources.memory_budget_gb)" in message
    decompressed = float(re.search(r"more than ([\d.]+) MB of CSV text decompressed", message).group(1))
    assert 10.0 <= decompressed < 12.0  # counting stopped just past what the budget allows, not at 24 MB


def doctored(path, replacements: dict[int, int]):
    """A copy of a Parquet file whose footer claims other sizes: every Thrift compact varint (zigzag)
    of a key is replaced by one of its value, of the same length so that the footer still parses."""

    def varint(value: int) -> bytes:
        number, encoded = value << 1, bytearray()
        while number >= 0x80:
            encoded.append(number & 0x7F | 0x80)
            number >>= 7
        return bytes(encoded + bytes([number]))

    data = path.read_bytes()
    footer_length = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_length
    footer = data[start:-8]
    for true_size, claimed in replacements.items():
        assert len(varint(true_size)) == len(varint(claimed)) and footer.count(varint(true_size)) >= 1
        footer = footer.replace(varint(true_size), varint(claimed))
    lying = path.with_name("lying.parquet")
    lying.write_bytes(data[:start] + footer + data[-8:])
    return lying


def int_file(tmp_path, rows: int = 2_000_000):
    """One compressible int64 column, plainly encoded and zstd-compressed: the pages are 8 bytes a row
    before compression and far fewer after."""
    path = tmp_path / "orders.parquet"
    table = pa.table({"customer_id": np.arange(rows, dtype=np.int64) % 7})
    pq.write_table(table, path, compression="zstd", use_dictionary=False, row_group_size=rows)
    return path, pq.read_metadata(path).row_group(0).column(0)


def test_a_footer_that_understates_its_pages_is_not_under_counted(tmp_path):
    path, chunk = int_file(tmp_path)
    assert chunk.total_uncompressed_size > 16_000_000
    lying = doctored(path, {chunk.total_uncompressed_size: 1_100_000})
    assert pq.read_metadata(lying).row_group(0).column(0).total_uncompressed_size == 1_100_000
    loaded = read_source("transactions", str(lying)).nbytes
    assert estimate_source_size("transactions", str(lying)).bytes >= loaded > 16_000_000


def test_a_footer_that_claims_more_bytes_than_its_file_holds_is_refused(tmp_path):
    path, chunk = int_file(tmp_path)
    assert chunk.total_compressed_size < path.stat().st_size < 100_000_000
    lying = doctored(path, {chunk.total_compressed_size: 100_000_000})
    with pytest.raises(
        SourceError, match="source 'transactions': the Parquet footer of .*lying.parquet"
    ) as raised:
        estimate_source_size("transactions", str(lying))
    assert "customer_id" in str(raised.value) and "does not match the file" in str(raised.value)


def test_columns_that_expand_when_decoded_are_not_under_counted(tmp_path):
    """A dictionary page of one long value and run-length indices: a tiny file, 50 MB in memory."""
    path = tmp_path / "orders.parquet"
    rows = 50_000
    table = pa.table(
        {
            "customer_id": np.zeros(rows, dtype=np.int64),
            "note": pa.array(["x" * 1000] * rows),
        }
    )
    pq.write_table(table, path, compression="zstd")
    assert path.stat().st_size < 100_000
    loaded = read_source("transactions", str(path)).nbytes
    estimate = estimate_source_size("transactions", str(path)).bytes
    assert loaded <= estimate <= 1.2 * loaded

    with pytest.raises(SourceError, match="source 'transactions' is too large for the memory budget"):
        sources_within_budget(transactions(str(path)), budget_leaving(10e6))
