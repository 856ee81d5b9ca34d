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
import pyarrow.compute as pc

from segflow.contracts.rules import READ_CHECKED_TYPES, CompiledContract, CompiledRule, typed_column
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
        config = dict(rule.expectation, meta={**rule.expectation["meta"], "position": position})
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
    """The contract's columns as loaded, plus each typed column read as its logical type."""
    frame = table[present].reset_index(drop=True)
    for column in present:
        logical_type = compiled.columns[column]
        if logical_type in READ_CHECKED_TYPES:
            frame[typed_column(column, logical_type)] = read_as(frame[column], logical_type)
    hashed = {column for rule in compiled.rules if rule.measure == "repeats" for column in rule.columns}
    for column in hashed & set(present):
        if isinstance(frame[column].dtype, pd.StringDtype):  # Arrow-backed text, not mixed objects
            equality_only = all(
                rule.expectation["type"] in EQUALITY_RULES
                for rule in compiled.rules
                if column in rule.columns
            )
            frame[column] = _as_codes(frame[column]) if equality_only else _as_categories(frame[column])
    return frame


# rules that only ask whether values are missing or equal: they hold the same on dictionary codes
EQUALITY_RULES = {
    "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
    "expect_column_values_to_not_be_null",
}


def _dictionary(values: pd.Series) -> pa.DictionaryArray:
    text = pa.array(values, from_pandas=True)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return pc.dictionary_encode(text)


def _as_codes(values: pd.Series) -> pd.Series:
    """Text replaced by its dictionary code (nulls kept), for rules that only compare values. GX's
    uniqueness rules call pandas' `duplicated`, which hashed 10M Arrow strings in 4.3 s per call;
    on integer codes it takes 0.14 s, and no second copy of the text is held."""
    codes = _dictionary(values).indices.cast(pa.int64())
    return pd.Series(
        pd.array(codes.to_pandas(types_mapper=pd.ArrowDtype).array, dtype="Int64"), index=values.index
    )


def _as_categories(values: pd.Series) -> pd.Series:
    """Text as a categorical column (dictionary-encoded by Arrow), for rules that also read it."""
    encoded = _dictionary(values)
    categories = pd.Index(encoded.dictionary.to_pandas(), dtype=values.dtype)
    codes = encoded.indices.fill_null(-1).to_numpy()
    return pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=values.index)


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
