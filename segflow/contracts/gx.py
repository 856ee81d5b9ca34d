"""The Great Expectations runtime: one ephemeral context, a reusable DataFrame batch definition, and a
contract's rules validated as one expectation suite on a frame prepared for them."""

from __future__ import annotations

import functools
import json
import logging
import threading

import numpy as np
import pandas as pd
import pyarrow as pa

from segflow.contracts.rules import (
    READ_CHECKED_TYPES,
    CompiledContract,
    CompiledRule,
    readable_column,
    typed_column,
)
from segflow.errors import ConfigError

# Failing row positions come back as GX's unexpected_index_list (the validated frame has a
# RangeIndex, so index = position); values are left out: rows may hold personal data.
GX_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}
GX_LOCK = threading.Lock()


@functools.cache
def gx_runtime():
    """Great Expectations, an ephemeral context and a reusable DataFrame batch definition."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints each batch under HASH_THRESHOLD bytes (1 GB) for its batch markers, an md5 of
    # pandas' hash of every row, which segflow never reads: 0.8 s of the contract checks of a
    # 100,000-customer run, 1.2 s of a 1M one (the customers and the published segments; 12M
    # transactions are over the threshold). The 100k process was not measurably faster for it
    # (benchmarks/RESULTS.md); it is work nobody reads.
    pandas_execution_engine.HASH_THRESHOLD = 0

    # Some GX modules set their own logger level, so each one is lowered, not only the root.
    for name in [*logging.root.manager.loggerDict, "great_expectations"]:
        if name.split(".")[0] == "great_expectations":
            logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
        ),
    )
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("segflow").add_dataframe_asset("contract_table")
    return gx, asset.add_batch_definition_whole_dataframe("whole_table")


def to_expectation_suite(compiled: CompiledContract, rules: list[CompiledRule] | None = None):
    """Build the GX ExpectationSuite of the given rules (default: all rules of the contract)."""
    gx = gx_runtime()[0]
    from great_expectations.exceptions import (
        ExpectationNotFoundError,
        InvalidExpectationConfigurationError,
    )
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = []
    for position, rule in enumerate(compiled.rules if rules is None else rules):
        expectation = gx_expectation(rule)
        config = dict(expectation, meta={**expectation["meta"], "position": position})
        try:
            expectations.append(ExpectationConfiguration(**config).to_domain_obj())
        except ExpectationNotFoundError as exc:
            raise ConfigError(
                f"contract '{compiled.name}', rule '{rule.rule}': Great Expectations has no "
                f"expectation {config['type']!r}"
            ) from exc
        except (InvalidExpectationConfigurationError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"contract '{compiled.name}', rule '{rule.rule}': Great Expectations rejects "
                f"its arguments {config['kwargs']}: {exc}"
            ) from exc
    return gx.ExpectationSuite(name=f"{compiled.name} {compiled.version}", expectations=expectations)


def validate_with_gx(frame: pd.DataFrame, compiled: CompiledContract, rules: list[CompiledRule]):
    """GX's result of the rules' expectation suite on the frame, with the failing rows' indexes."""
    with GX_LOCK:
        suite = to_expectation_suite(compiled, rules)
        # GX's own Validator, which Batch.validate and ValidationDefinition.run both wrap: the
        # first fetches (and fingerprints) the batch twice, the second keeps every result.
        from great_expectations.validator.v1_validator import Validator

        validator = Validator(
            batch_definition=gx_runtime()[1],
            batch_parameters={"dataframe": frame},
            result_format=GX_RESULT_FORMAT,
        )
        return validator.validate_expectation_suite(suite)


def validation_frame(table: pd.DataFrame, compiled: CompiledContract, present: list[str]) -> pd.DataFrame:
    """The contract's columns as loaded, plus each typed column read as its logical type and each
    uniqueness rule's key hash."""
    frame = table[present].reset_index(drop=True)
    for column in present:
        logical_type = compiled.columns[column]
        if logical_type in READ_CHECKED_TYPES:
            typed = read_as(frame[column], logical_type)
            frame[typed_column(column, logical_type)] = typed
            # GX's row condition 'present' filtered every column of the frame per rule (2.7 s on
            # 12M rows); this column asks the same of every row without one
            readable = (frame[column].isna() | typed.notna()).to_numpy()
            frame[readable_column(column, logical_type)] = np.where(readable, 1.0, np.nan)
    for rule in compiled.rules:
        if rule.measure == "repeats" and set(rule.columns) <= set(present):
            columns = key_columns(rule)
            if key_column(columns) not in frame:
                frame[key_column(columns)] = key_hashes(frame, columns)
    return frame


def key_columns(rule: CompiledRule) -> list[str]:
    """The validated columns a uniqueness rule compares."""
    kwargs = rule.expectation["kwargs"]
    return list(kwargs.get("column_list") or [kwargs["column"]])


def key_column(columns: list[str]) -> str:
    return f"{' + '.join(columns)} (key hash)"


def gx_expectation(rule: CompiledRule) -> dict:
    """The expectation GX validates for a rule. A uniqueness rule (single or compound) is checked as
    the uniqueness of its key's 64-bit hash (`key_hashes`): GX's own check calls pandas `duplicated`
    on the columns, which took 21 s on 12M rows of five columns and 9 s to prepare one text column;
    on the hash it takes 3.4 s. Equal keys have equal hashes, so GX flags every repeat; `repeated_rows`
    then compares the flagged rows' own values, so a hash collision never quarantines a row."""
    if rule.measure != "repeats":
        return rule.expectation
    columns = key_columns(rule)
    kwargs = {"column": key_column(columns)}
    if "mostly" in rule.expectation["kwargs"]:
        kwargs["mostly"] = rule.expectation["kwargs"]["mostly"]
    return {
        **rule.expectation,
        "type": "expect_column_values_to_be_unique",
        "kwargs": kwargs,
        "meta": {**rule.expectation["meta"], "key_columns": columns},
    }


def key_hashes(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each row's key over the columns as one 64-bit hash (DuckDB's `hash`), null where every column
    is missing (GX skips such rows: a single column's nulls, a compound key's all-missing rows).
    Values pandas holds equal hash equally (`_hashable`)."""
    import duckdb

    arrays = {f"c{position}": _hashable(frame[column]) for position, column in enumerate(columns)}
    missing = " and ".join(f"{name} is null" for name in arrays)
    with duckdb.connect() as connection:
        connection.register("keys", pa.table(arrays))
        hashes = connection.sql(
            f"select case when {missing} then null else hash({', '.join(arrays)}) end as hash from keys"
        ).to_arrow_table()["hash"]
    if hashes.null_count == 0:  # plain uint64: GX's `duplicated` on it is 15% faster than on UInt64
        return pd.Series(hashes.to_numpy(), index=frame.index)
    return pd.Series(
        hashes.to_pandas(types_mapper={pa.uint64(): pd.UInt64Dtype()}.get).array, index=frame.index
    )


def _hashable(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A column as an Arrow array whose equal values pandas' `duplicated` also holds equal: numbers,
    booleans, text and timestamps as they are (-0.0 read as 0.0), anything else (mixed Python
    objects, categories, periods, ...) as its pandas factorisation."""
    dtype = values.dtype
    if pd.api.types.is_float_dtype(dtype):
        return pa.array(values + 0.0, from_pandas=True)  # -0.0 -> 0.0, NaN -> null
    if (
        pd.api.types.is_integer_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
        or isinstance(dtype, pd.StringDtype)
    ):
        return pa.array(values, from_pandas=True)
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    return pa.array(codes, mask=codes < 0)


def read_as(values: pd.Series, logical_type: str) -> pd.Series:
    """Values read as a logical type; a value that cannot be read becomes null."""
    if logical_type in ("date", "timestamp"):
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            return values
        return pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    numbers = (
        values if pd.api.types.is_numeric_dtype(values.dtype) else pd.to_numeric(values, errors="coerce")
    )
    numbers = pd.Series(numbers.to_numpy(dtype="float64", na_value=np.nan), index=values.index)
    return numbers.where(numbers % 1 == 0) if logical_type == "integer" else numbers


def serialisable(result) -> dict:
    """The GX validation result as JSON-ready data, without the per-row index lists."""
    described = result.to_json_dict()
    for expectation_result in described.get("results", []):
        (expectation_result.get("result") or {}).pop("unexpected_index_list", None)
    return json.loads(json.dumps(described, default=str))
