"""Quarantined rows: input rows a run could not use, kept with the rule they failed, never dropped
silently. One layout and one record format for contract failures and unusable transactions."""

from __future__ import annotations

import numpy as np
import pandas as pd

# a quarantined row as a stage finds it; the run stamps run_id and as_of (the table `quarantine`)
QUARANTINE_ROW_COLUMNS = ("source", "rule", "column_name", "severity", "row_number", "record")
PERSONAL_DATA_WITHHELD = "[personal data withheld]"


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": pd.Series(dtype="str"),
            "rule": pd.Series(dtype="str"),
            "column_name": pd.Series(dtype="object"),
            "severity": pd.Series(dtype="str"),
            "row_number": pd.Series(dtype="int64"),
            "record": pd.Series(dtype="str"),
        }
    )


def quarantine_frame(
    table: pd.DataFrame,
    source: str,
    failures: list[tuple[str, str | None, str, np.ndarray]],
    personal: frozenset[str] = frozenset(),
    row_numbers: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per (failing row, rule) of `failures` (rule, column, severity, row positions in the
    table), with the row as JSON text and personal values withheld (the row number and id find the
    row in the source). Row numbers are the positions, or `row_numbers[position]` when given."""
    failures = [failure for failure in failures if len(failure[3])]
    if not failures:
        return empty_quarantine()
    positions = np.concatenate([rows for *_, rows in failures]).astype("int64")
    distinct = np.unique(positions)
    failing = table.iloc[distinct].astype({c: object for c in personal if c in table.columns})
    for column in personal & set(failing.columns):
        failing[column] = failing[column].mask(failing[column].notna(), PERSONAL_DATA_WITHHELD)
    records = np.asarray(records_as_json(failing), dtype=object)
    lengths = [len(rows) for *_, rows in failures]
    return pd.DataFrame(
        {
            "source": source,
            "rule": np.repeat([rule for rule, *_ in failures], lengths),
            "column_name": np.repeat(np.asarray([f[1] for f in failures], dtype=object), lengths),
            "severity": np.repeat([f[2] for f in failures], lengths),
            "row_number": positions if row_numbers is None else np.asarray(row_numbers)[positions],
            "record": records[np.searchsorted(distinct, positions)],
        }
    )[list(QUARANTINE_ROW_COLUMNS)]


def quarantine_rows(
    rows: pd.DataFrame, source: str, rule: str, column: str | None, severity: str
) -> pd.DataFrame:
    """Rows of a source that one rule keeps out, numbered by their index (their place in the source)."""
    return quarantine_frame(
        rows.reset_index(drop=True),
        source,
        [(rule, column, severity, np.arange(len(rows)))],
        row_numbers=rows.index.to_numpy(dtype="int64"),
    )


def records_as_json(rows: pd.DataFrame) -> list[str]:
    """Each row as a JSON object of its values as text (null stays null)."""
    text = rows.astype("string").to_json(orient="records", lines=True, force_ascii=False)
    return text.splitlines()
