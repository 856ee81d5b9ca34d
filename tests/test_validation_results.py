"""Validation result files and Data Docs: every outcome written, no row value in any file."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from segflow.config import SourceConfig, SourcesConfig, TransactionsSourceConfig
from segflow.contracts.check import SourcesCheck
from segflow.contracts.results import OUTCOME_FIELDS, build_data_docs, write_validation_results
from tests.helpers import check_configured, check_file

DATA_CONTRACTS = Path(__file__).parents[1] / "data_contracts"
# Distinctive values planted in failing rows: none may reach a file.
PLANTED_EMAIL = "zelda.quarantined-at-planted"
PLANTED_CHANNEL = "carrier-pigeon-planted"
PLANTED_AMOUNT = -73519.25
EXPECTED_ROWS = {
    "customers": {"checked": 6, "passed": 5, "quarantined": 1},
    "transactions": {"checked": 12, "passed": 10, "quarantined": 2},
}


def customers(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(1, n + 1)],
            "email": [f"person{i}@example.com" for i in range(1, n + 1)],
            "signup_date": pd.date_range("2024-01-01", periods=n, freq="D"),
            "country": ["DE", "FR", "GB", "US", "ES", "IT", "NL"][:n],
            "acquisition_channel": ["organic"] * n,
            "age": [25 + i for i in range(n)],
            "web_sessions_90d": list(range(n)),
            "email_opens_90d": [3] * n,
            "email_clicks_90d": [1] * n,
        }
    )


def transactions(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [f"O{i:08d}" for i in range(n)],
            "customer_id": [f"C{i % 6 + 1:07d}" for i in range(n)],
            "order_ts": pd.date_range("2024-03-01", periods=n, freq="h"),
            "amount": [10.0 + i for i in range(n)],
            "sales_channel": ["web", "store", "app"] * (n // 3),
        }
    )


@pytest.fixture(scope="module")
def checked() -> SourcesCheck:
    people = customers()
    people.loc[2, "email"] = PLANTED_EMAIL
    orders = transactions()
    orders.loc[4, "sales_channel"] = PLANTED_CHANNEL
    orders.loc[7, "amount"] = PLANTED_AMOUNT
    config = SourcesConfig(
        customers=SourceConfig(uri="customers.parquet", contract=DATA_CONTRACTS / "customers.odcs.yaml"),
        transactions=TransactionsSourceConfig(
            uri="transactions.parquet", contract=DATA_CONTRACTS / "transactions.odcs.yaml"
        ),
    )
    return check_configured({"customers": people, "transactions": orders}, config)


@pytest.fixture(scope="module")
def result_files(checked: SourcesCheck, tmp_path_factory) -> list[Path]:
    return write_validation_results(checked, tmp_path_factory.mktemp("results"))


def planted_values_in(text: str) -> list[str]:
    return [value for value in (PLANTED_EMAIL, PLANTED_CHANNEL, "73519") if value in text]


def test_one_json_file_per_source_with_every_outcome(checked, result_files):
    assert [path.name for path in result_files] == [
        "validation_customers.json",
        "validation_transactions.json",
    ]
    for path, (source, report) in zip(result_files, checked.reports.items(), strict=True):
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document["source"] == source
        assert document["contract_version"] == "1.0.0"
        assert document["outcomes"] == [
            {name: value for name, value in asdict(o).items() if name in OUTCOME_FIELDS}
            for o in report.outcomes
        ]
        assert set(document["outcomes"][0]) == set(OUTCOME_FIELDS)
        assert document["rows"] == EXPECTED_ROWS[source]
        result = document["validation_result"]
        assert result["suite_name"] == f"{source} 1.0.0"
        assert len(result["results"]) == len([o for o in report.outcomes if not o.rule.endswith(" present")])
    (customers_file, transactions_file) = (json.loads(p.read_text()) for p in result_files)
    failed = {o["rule"]: o["unexpected_count"] for o in customers_file["outcomes"] if not o["success"]}
    assert failed == {"email matches ^[^@ ]+@[^@ ]+[.][^@ ]+$": 1}
    failed = {o["rule"]: o["unexpected_count"] for o in transactions_file["outcomes"] if not o["success"]}
    assert failed == {"amount between 0 and 100000": 1, "sales_channel in [web, store, app]": 1}


def test_files_hold_no_row_values(result_files):
    for path in result_files:
        assert planted_values_in(path.read_text(encoding="utf-8")) == []


def test_aggregate_observed_values_are_left_out(tmp_path):
    """A custom GX rule on a column's maximum reports that row's value; the file drops it."""
    contract = {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": "scores",
        "name": "scores",
        "version": "1.0.0",
        "status": "active",
        "schema": [
            {
                "name": "scores",
                "properties": [
                    {
                        "name": "score",
                        "logicalType": "number",
                        "quality": [
                            {
                                "type": "custom",
                                "engine": "greatExpectations",
                                "implementation": {
                                    "type": "expect_column_max_to_be_between",
                                    "kwargs": {"max_value": 100},
                                },
                                "severity": "warning",
                            }
                        ],
                    }
                ],
            }
        ],
    }
    contract_path = tmp_path / "scores.odcs.yaml"
    contract_path.write_text(json.dumps(contract))
    report = check_file(pd.DataFrame({"score": [1.0, 987654.5, 3.0]}), contract_path, "scores")
    assert "987654" in json.dumps(report.validation_result)  # what GX reports
    (path,) = write_validation_results(SourcesCheck({"scores": report}, {}), tmp_path / "out")
    document = json.loads(path.read_text())
    assert "987654" not in path.read_text()
    assert [o["success"] for o in document["outcomes"]] == [True, False]


def test_rewriting_replaces_files_and_leaves_no_temporary_files(checked, tmp_path):
    (tmp_path / "validation_customers.json").write_text("stale")
    first = write_validation_results(checked, tmp_path)
    second = write_validation_results(checked, tmp_path)
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in first]
    json.loads(first[0].read_text())


def test_data_docs_site_shows_each_suite_and_no_row_values(result_files, tmp_path):
    index = build_data_docs(result_files, tmp_path / "docs")
    assert index == (tmp_path / "docs" / "index.html").resolve()
    html = index.read_text(encoding="utf-8")
    assert "customers 1.0.0" in html and "transactions 1.0.0" in html
    pages = sorted((tmp_path / "docs" / "validations").rglob("*.html"))
    assert [page.stem for page in pages] == ["customers", "transactions"]
    for page in [index, *pages]:
        assert planted_values_in(page.read_text(encoding="utf-8")) == []


def test_data_docs_refuses_a_file_that_is_not_a_validation_result(tmp_path):
    stray = tmp_path / "validation_other.json"
    stray.write_text(json.dumps({"success": True}))
    with pytest.raises(ValueError, match="validation_other.json was not written by write_validation_results"):
        build_data_docs([stray], tmp_path / "docs")
