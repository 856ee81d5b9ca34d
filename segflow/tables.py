"""The published tables: names, columns, types and keys, shared by every storage target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

CUSTOMER_ID = "customer_id"
NOISE_LABEL = -1  # the clustering's label for noise (density methods only)
NOISE_SEGMENT_KEY = "seg-0000"
NOISE_NAME = "Atypical customers"  # the density methods' noise, published under NOISE_SEGMENT_KEY


@dataclass(frozen=True)
class TableSpec:
    """One published table: typed columns, its primary key, and how a run writes it."""

    name: str
    columns: tuple[tuple[str, pa.DataType | None], ...]  # None: the customer id's own type
    primary_key: tuple[str, ...] = ()
    # "snapshot": replaced whole by each publication; "per_as_of": the run's as-of rows are
    # replaced, other dates kept (append-only history, idempotent per date); "derived": computed
    # from other tables by the target (MEMBERSHIP_HISTORY_SQL: a view in a warehouse, a file in Parquet).
    mode: str = "snapshot"

    def arrow_schema(self, id_type: pa.DataType) -> pa.Schema:
        return pa.schema([(name, id_type if kind is None else kind) for name, kind in self.columns])


TIMESTAMP = pa.timestamp("us")
TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "customer_segments",
            (
                (CUSTOMER_ID, None),
                ("segment_key", pa.string()),
                ("segment_name", pa.string()),
                ("segment_since", pa.date32()),
                ("changed_at", TIMESTAMP),
            ),
            primary_key=(CUSTOMER_ID,),
        ),
        TableSpec(
            "customer_rfm_scores",
            (
                (CUSTOMER_ID, None),
                ("recency_score", pa.int16()),
                ("frequency_score", pa.int16()),
                ("monetary_score", pa.int16()),
                ("rfm_segment", pa.string()),
                ("as_of", pa.date32()),
            ),
            primary_key=(CUSTOMER_ID,),
        ),
        TableSpec(
            "segment_changes",
            (
                ("run_id", pa.string()),
                ("as_of", pa.date32()),
                (CUSTOMER_ID, None),
                ("from_segment_key", pa.string()),
                ("to_segment_key", pa.string()),
                ("change_type", pa.string()),
                ("from_segment_since", pa.date32()),
                ("changed_at", TIMESTAMP),
            ),
            primary_key=("as_of", CUSTOMER_ID),
            mode="per_as_of",
        ),
        TableSpec(
            "segment_profiles",
            (
                ("run_id", pa.string()),
                ("as_of", pa.date32()),
                ("segment_key", pa.string()),
                ("segment_name", pa.string()),
                ("description", pa.string()),
                ("size", pa.int64()),
                ("share", pa.float64()),
                ("features", pa.string()),
                ("top_categories", pa.string()),
                ("rules", pa.string()),  # JSON: conditions, recall, precision (noise: null)
            ),
            primary_key=("as_of", "segment_key"),
            mode="per_as_of",
        ),
        TableSpec(
            "segment_definitions",
            (
                ("segment_key", pa.string()),
                ("segment_name", pa.string()),
                ("description", pa.string()),
                ("first_seen", pa.date32()),
                ("last_seen", pa.date32()),
                ("active", pa.bool_()),
                ("name_facts", pa.string()),  # JSON: what the name states; a name is kept while they hold
            ),
            primary_key=("segment_key",),
        ),
        TableSpec(
            "segment_holdouts",
            (
                (CUSTOMER_ID, None),
                ("segment_key", pa.string()),
                ("holdout", pa.bool_()),
                ("assigned_at", TIMESTAMP),
            ),
            primary_key=(CUSTOMER_ID,),
        ),
        TableSpec(
            "segment_membership_history",
            (
                (CUSTOMER_ID, None),
                ("segment_key", pa.string()),
                ("valid_from", pa.date32()),
                ("valid_to", pa.date32()),
            ),
            mode="derived",
        ),
        TableSpec(
            "segmentation_runs",
            (
                ("run_id", pa.string()),
                ("as_of", pa.date32()),
                ("started_at", TIMESTAMP),
                ("finished_at", TIMESTAMP),
                ("status", pa.string()),
                ("message", pa.string()),
                ("algorithm", pa.string()),
                ("parameters", pa.string()),
                ("scores", pa.string()),
                ("n_segments", pa.int64()),
                ("gate_passed", pa.bool_()),
                ("gate_reasons", pa.string()),
                ("gate_override", pa.string()),
                ("rows_read", pa.string()),
                ("rows_quarantined", pa.int64()),
                ("rows_published", pa.int64()),
                ("contract_versions", pa.string()),
                ("input_fingerprint", pa.string()),
                ("code_version", pa.string()),
                ("details", pa.string()),
            ),
            primary_key=("run_id",),
        ),
        TableSpec(
            "segment_models",
            (
                ("run_id", pa.string()),
                ("as_of", pa.date32()),
                ("created_at", TIMESTAMP),
                ("algorithm", pa.string()),
                ("model_columns", pa.string()),
                ("segment_keys", pa.string()),
                ("model", pa.binary()),
                ("model_sha256", pa.string()),
            ),
            primary_key=("run_id",),
            mode="per_as_of",
        ),
        TableSpec(
            "quarantine",
            (
                ("run_id", pa.string()),
                ("as_of", pa.date32()),
                ("source", pa.string()),
                ("rule", pa.string()),
                ("column_name", pa.string()),
                ("severity", pa.string()),
                ("row_number", pa.int64()),
                ("record", pa.string()),
            ),
            mode="per_as_of",
        ),
    )
}


# Every customer's stay in each segment, from the change feed: an interval opens with each change that
# puts the customer in a segment and closes with their next change (valid_to exclusive; null: still in
# it). One text for every target: the warehouses' view, and DuckDB over the Parquet change files.
MEMBERSHIP_HISTORY_SQL = """SELECT customer_id, segment_key, valid_from, valid_to FROM (
    SELECT customer_id, to_segment_key AS segment_key, as_of AS valid_from,
           lead(as_of) OVER (PARTITION BY customer_id ORDER BY as_of) AS valid_to
    FROM {changes}
) AS intervals WHERE segment_key IS NOT NULL"""


def is_in(values: pd.Series, known: pd.Series | pd.Index) -> np.ndarray:
    """Which values occur in `known`, as a boolean array. Computed by Arrow: pandas' `isin` on
    Arrow-backed strings loops in Python (13 s for 12M transaction ids against 1M customers)."""
    try:
        searched = pa.array(values)
        found = pc.is_in(searched, value_set=pa.array(known).cast(searched.type))
        return found.to_numpy(zero_copy_only=False).astype(bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):  # types that do not cast
        return values.isin(known).to_numpy()


def id_arrow_type(ids: pd.Series) -> pa.DataType:
    """The Arrow type customer ids are published with: their own, with text as plain strings."""
    id_type = pa.Array.from_pandas(ids.head(1)).type
    return pa.string() if pa.types.is_large_string(id_type) or pa.types.is_null(id_type) else id_type


def to_arrow(name: str, frame: pd.DataFrame, id_type: pa.DataType) -> pa.Table:
    """A frame as an Arrow table with exactly the published columns and types."""
    schema = TABLES[name].arrow_schema(id_type)
    missing = [field.name for field in schema if field.name not in frame.columns]
    if missing:
        raise ValueError(f"table {name}: columns {missing} are missing")
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
