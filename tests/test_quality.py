"""Contract checks on small hand-made tables: which rule fails, how often, and which rows leave."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import segflow.contracts.gx as contracts_gx
from segflow.config import SourceConfig, SourcesConfig, TransactionsSourceConfig
from segflow.contracts.check import QualityReport, RuleOutcome, SourcesCheck, rows_where
from segflow.contracts.gx import key_hashes, to_expectation_suite
from segflow.contracts.odcs import compile_contract, compile_contract_file, load_contract
from segflow.errors import ConfigError, ContractViolation
from tests.helpers import check_configured, check_file

DATA_CONTRACTS = Path(__file__).parents[1] / "data_contracts"
CUSTOMERS = str(DATA_CONTRACTS / "customers.odcs.yaml")
TRANSACTIONS = str(DATA_CONTRACTS / "transactions.odcs.yaml")
COUNTRIES = ["DE", "FR", "GB", "US", "ES", "IT", "NL"]
CHANNELS = ["organic", "paid_search", "social", "referral", "email", "affiliate"]


def customers(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(1, n + 1)],
            "email": [f"person{i}@example.com" for i in range(1, n + 1)],
            "signup_date": pd.date_range("2024-01-01", periods=n, freq="D"),
            "country": [COUNTRIES[i % len(COUNTRIES)] for i in range(n)],
            "acquisition_channel": [CHANNELS[i % len(CHANNELS)] for i in range(n)],
            "age": [25 + i for i in range(n)],
            "web_sessions_90d": list(range(n)),
            "email_opens_90d": [3] * n,
            "email_clicks_90d": [1] * n,
        }
    )


def transactions(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [f"O{i:08d}" for i in range(n)],
            "customer_id": [f"C{i % 7 + 1:07d}" for i in range(n)],
            "order_ts": pd.date_range("2024-03-01", periods=n, freq="h"),
            "amount": [10.0 + i for i in range(n)],
            "sales_channel": [["web", "store", "app"][i % 3] for i in range(n)],
        }
    )


def failed(report: QualityReport) -> dict[str, tuple[str | None, str, int]]:
    """Failed rules as {rule: (column, severity, failing rows)}."""
    return {o.rule: (o.column, o.severity, o.unexpected_count) for o in report.outcomes if not o.success}


def quarantined(report: QualityReport, rule: str) -> list[int]:
    rows = report.quarantine.loc[report.quarantine["rule"] == rule, "row_number"]
    return rows.tolist()


def outcome(report: QualityReport, rule: str) -> RuleOutcome:
    (found,) = [o for o in report.outcomes if o.rule == rule]
    return found


def write_contract(tmp_path: Path, properties: list[dict], quality: list[dict] = ()) -> str:
    contract = {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": "test",
        "name": "test",
        "version": "2.0.0",
        "status": "active",
        "schema": [{"name": "things", "properties": properties, "quality": list(quality)}],
    }
    path = tmp_path / "things.odcs.yaml"
    path.write_text(json.dumps(contract))
    return str(path)


# --- clean tables -----------------------------------------------------------------------------


def test_clean_customers_pass_whole():
    table = customers()
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {}
    assert report.blocking == [] and report.warnings == []
    assert report.contract_version == "1.0.0"
    assert len(report.quarantine) == 0
    assert list(report.quarantine.columns) == [
        "source",
        "rule",
        "column_name",
        "severity",
        "row_number",
        "record",
    ]
    pd.testing.assert_frame_equal(report.passed_rows, table)
    assert report.validation_result["success"] is True
    assert json.loads(json.dumps(report.validation_result)) == report.validation_result


def test_clean_transactions_pass_whole():
    table = transactions()
    report = check_file(table, TRANSACTIONS, "transactions")
    assert failed(report) == {}
    assert [o.rule for o in report.outcomes] == [
        "order_id unique",
        "customer_id not null",
        "order_ts is timestamp",
        "order_ts not null",
        "amount is number",
        "amount not null",
        "amount between 0 and 100000",
        "sales_channel in [web, store, app]",
        "row count >= 1",
        "rows unique (failing rows <= 5%)",
    ]
    pd.testing.assert_frame_equal(report.passed_rows, table)


def test_a_single_customer_passes():
    report = check_file(customers(1), CUSTOMERS, "customers")
    assert failed(report) == {}
    assert len(report.passed_rows) == 1


def test_the_passed_rows_are_the_rows_boolean_indexing_gives_for_every_kind_of_column():
    n = 9
    table = pd.DataFrame(
        {
            "text_arrow": pd.array([f"t{i}" if i % 4 else None for i in range(n)], dtype="string[pyarrow]"),
            "text_python": pd.array([f"p{i}" if i % 3 else None for i in range(n)], dtype="string[python]"),
            "text_default": pd.Series([f"d{i}" for i in range(n)]),
            "mixed": pd.Series([1, "a", None, 2.5, b"x", {"k": 1}, [1], 3, "z"], dtype=object),
            "object_text": pd.Series(["a", None, "c", "d", None, "f", "g", "h", "i"], dtype=object),
            "object_dates": pd.Series([pd.Timestamp("2024-01-01")] * n, dtype=object),
            "category": pd.Categorical(["a", "b", None] * 3),
            "nullable_int": pd.array([1, None, 3, 4, None, 6, 7, 8, 9], dtype="Int64"),
            "arrow_int": pd.array([1, None, 3, 4, 5, 6, 7, 8, 9], dtype="int64[pyarrow]"),
            "when": pd.date_range("2024-01-01", periods=n, freq="D", tz="Europe/Berlin"),
            "flag": [True, False, None, True, False, True, None, True, False],
            "number": np.linspace(0.0, 1.0, n),
        },
        index=pd.Index([10, 3, 7, 99, 5, 6, 1, 2, 0], name="row"),
    )
    # a repeated column name, as a table read from Arrow may have
    table.insert(2, "number", np.arange(n), allow_duplicates=True)
    table.attrs["source"] = "customers"
    masks = (np.arange(n) % 2 == 0, np.arange(n) % 3 != 1, np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    for index in (table.index, pd.RangeIndex(n)):  # a range stays a range where table[mask] keeps it one
        table.index = index
        for mask in masks:
            rows = rows_where(table, mask)
            pd.testing.assert_frame_equal(rows, table[mask], check_index_type=True)
            assert rows.attrs == table[mask].attrs
            assert rows["object_text"].tolist() == table[mask]["object_text"].tolist()  # None stays None


def test_columns_outside_the_contract_are_kept_but_not_checked():
    table = customers(3).assign(notes=["anything", None, 42])
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {}
    assert list(report.passed_rows.columns) == list(table.columns)


# --- structure and types ----------------------------------------------------------------------


def test_missing_required_column_is_a_critical_outcome_not_a_traceback():
    table = transactions(4).drop(columns=["amount"])
    report = check_file(table, TRANSACTIONS, "transactions")
    assert failed(report) == {"amount present": ("amount", "critical", 4)}
    assert report.blocking[0].message == (
        "column 'amount' required by the contract is missing from source 'transactions'; "
        f"found: order_id, customer_id, order_ts, sales_channel [{TRANSACTIONS}]"
    )
    assert [o.rule for o in report.outcomes if o.column == "amount"] == ["amount present"]
    assert len(report.quarantine) == 0


def test_missing_optional_column_is_a_warning():
    report = check_file(customers(3).drop(columns=["email"]), CUSTOMERS, "customers")
    assert failed(report) == {"email present": ("email", "warning", 3)}
    assert report.blocking == []
    assert "its rules were skipped" in report.warnings[0].message


def test_text_in_an_integer_column_fails_the_type_rule_naming_the_column():
    table = customers(5)
    table["age"] = pd.Series([30, "thirty", 41.5, None, "42"], dtype=object)
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {"age is integer": ("age", "critical", 2)}
    assert quarantined(report, "age is integer") == [1, 2]
    assert report.blocking[0].message == (
        f"source 'customers', column 'age', rule 'age is integer' (critical): 2 of 5 rows fail [{CUSTOMERS}]"
    )
    assert report.passed_rows["customer_id"].tolist() == ["C0000001", "C0000004", "C0000005"]
    assert report.passed_rows["age"].tolist() == [30, None, "42"]


def test_text_in_a_number_and_a_date_column():
    table = transactions(5)
    table["amount"] = pd.Series(["12.50", "n/a", 7, None, "3"], dtype=object)
    table["order_ts"] = pd.Series(
        ["2024-03-01T10:00:00", "2024-03-02", "yesterday", "2024-03-04", "2024-03-05"],
        dtype=object,
    )
    report = check_file(table, TRANSACTIONS, "transactions")
    assert failed(report) == {
        "amount is number": ("amount", "critical", 1),
        "amount not null": ("amount", "critical", 1),
        "order_ts is timestamp": ("order_ts", "critical", 1),
    }
    assert quarantined(report, "amount is number") == [1]
    assert quarantined(report, "amount not null") == [3]
    assert quarantined(report, "order_ts is timestamp") == [2]
    assert report.passed_rows["order_id"].tolist() == ["O00000000", "O00000004"]


# --- nulls and duplicates ---------------------------------------------------------------------


def test_null_ids_are_critical_and_quarantined():
    table = customers(5)
    table.loc[[1, 3], "customer_id"] = None
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {"customer_id not null": ("customer_id", "critical", 2)}
    assert quarantined(report, "customer_id not null") == [1, 3]
    first = json.loads(report.quarantine["record"].iloc[0])
    assert first == {
        "customer_id": None,
        "email": "[personal data withheld]",  # the contract marks email as personal data
        "signup_date": "2024-01-02",
        "country": "FR",
        "acquisition_channel": "paid_search",
        "age": "26",
        "web_sessions_90d": "1",
        "email_opens_90d": "3",
        "email_clicks_90d": "1",
    }
    labels = report.quarantine[["source", "column_name", "severity"]].drop_duplicates()
    assert labels.values.tolist() == [["customers", "customer_id", "critical"]]


def test_duplicate_ids_quarantine_only_the_later_occurrences():
    table = customers(4)
    table = pd.concat([table, table.iloc[[0]], table.iloc[[1]].assign(age=60)])
    table.index = [10, 11, 12, 13, 14, 15]
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {"customer_id unique": ("customer_id", "warning", 2)}
    assert quarantined(report, "customer_id unique") == [4, 5]
    assert report.passed_rows.index.tolist() == [10, 11, 12, 13]
    assert report.passed_rows["age"].tolist() == [25, 26, 27, 28]
    assert "2 of 6 rows fail as repeats of an earlier row" in report.warnings[0].message


def test_a_duplicate_is_kept_when_the_first_occurrence_is_quarantined_for_another_rule():
    table = customers(3)
    table = pd.concat([table, table.iloc[[0]]], ignore_index=True)
    table.loc[0, "country"] = "XX"
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {
        "country in [DE, FR, GB, US, ES, IT, NL]": ("country", "warning", 1),
    }
    assert report.passed_rows.index.tolist() == [1, 2, 3]


@pytest.mark.parametrize("hashes", ["distinct", "all colliding"])
def test_duplicated_transaction_rows_are_quarantined_and_their_share_reported(hashes, monkeypatch):
    """Also when every key hashes alike, as if all collided: GX then flags every row, and only the
    true repeats of an earlier row are counted and quarantined."""
    if hashes == "all colliding":
        monkeypatch.setattr(
            contracts_gx,
            "key_hashes",
            lambda frame, columns: pd.Series(pd.array([7] * len(frame), dtype="UInt64"), index=frame.index),
        )
    table = transactions(20)
    table = pd.concat([table, table.iloc[[0, 5]]], ignore_index=True)
    report = check_file(table, TRANSACTIONS, "transactions")
    flagged_by_gx = [
        result["result"]["unexpected_count"]
        for result in report.validation_result["results"]
        if result["expectation_config"]["meta"].get("key_columns")
    ]
    assert flagged_by_gx == ([4, 4] if hashes == "distinct" else [22, 22])
    assert failed(report) == {
        "order_id unique": ("order_id", "warning", 2),
        "rows unique (failing rows <= 5%)": (None, "warning", 2),
    }
    assert quarantined(report, "order_id unique") == [20, 21]
    assert quarantined(report, "rows unique (failing rows <= 5%)") == []
    assert outcome(report, "rows unique (failing rows <= 5%)").message == (
        "source 'transactions', rule 'rows unique (failing rows <= 5%)' (warning): 2 of 22 rows "
        f"fail as repeats of an earlier row (9.09%, allowed <= 5%) [{TRANSACTIONS}]"
    )
    assert report.blocking == []
    pd.testing.assert_frame_equal(report.passed_rows, table.iloc[:20])


def test_a_duplicate_share_within_tolerance_passes():
    table = transactions(40)
    table = pd.concat([table, table.iloc[[3]]], ignore_index=True)
    report = check_file(table, TRANSACTIONS, "transactions")
    assert failed(report) == {"order_id unique": ("order_id", "warning", 1)}
    assert outcome(report, "rows unique (failing rows <= 5%)").unexpected_count == 1


# --- values -----------------------------------------------------------------------------------


def test_negative_zero_and_absurd_amounts_are_quarantined_as_warnings():
    table = transactions(8)
    table["amount"] = [12.5, -3.0, 0.0, 100_000.0, 100_000.01, 2.5e9, np.nan, 99.99]
    report = check_file(table, TRANSACTIONS, "transactions")
    assert failed(report) == {
        "amount between 0 and 100000": ("amount", "warning", 4),
        "amount not null": ("amount", "critical", 1),
    }
    assert quarantined(report, "amount between 0 and 100000") == [1, 2, 4, 5]
    assert quarantined(report, "amount not null") == [6]
    assert outcome(report, "amount between 0 and 100000").message == (
        "source 'transactions', column 'amount', rule 'amount between 0 and 100000' (warning): "
        f"4 of 8 rows fail [{TRANSACTIONS}]"
    )
    assert report.passed_rows["amount"].tolist() == [12.5, 100_000.0, 99.99]


def test_unknown_categories_and_other_spellings_are_caught():
    table = transactions(6)
    table["sales_channel"] = ["web", "fax", "Web", " app", "store ", "app"]
    report = check_file(table, TRANSACTIONS, "transactions")
    assert failed(report) == {"sales_channel in [web, store, app]": ("sales_channel", "warning", 4)}
    assert quarantined(report, "sales_channel in [web, store, app]") == [1, 2, 3, 4]
    assert report.passed_rows["sales_channel"].tolist() == ["web", "app"]


def test_country_case_and_spaces_and_nullable_channel():
    table = customers(5)
    table["country"] = ["DE", "de", "FR ", "XX", None]
    table["acquisition_channel"] = [None, "organic", "Organic", "email", None]
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {
        "country in [DE, FR, GB, US, ES, IT, NL]": ("country", "warning", 3),
        "acquisition_channel in [organic, paid_search, social, referral, email, affiliate]": (
            "acquisition_channel",
            "warning",
            1,
        ),
    }
    assert report.passed_rows["customer_id"].tolist() == ["C0000001", "C0000005"]


def test_pattern_rules_have_their_own_severities():
    table = customers(4)
    table["email"] = ["a@example.com", "not-an-email", None, "b@example"]
    table.loc[3, "customer_id"] = "c0000004"
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {
        "customer_id matches ^C[0-9]{7}$": ("customer_id", "critical", 1),
        "email matches ^[^@ ]+@[^@ ]+[.][^@ ]+$": ("email", "warning", 2),
    }
    assert quarantined(report, "email matches ^[^@ ]+@[^@ ]+[.][^@ ]+$") == [1, 3]


def test_out_of_range_ages_and_negative_counts():
    table = customers(4)
    table["age"] = [17, 18, 100, 101]
    table["email_clicks_90d"] = [0, -1, 2, 3]
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {
        "age between 18 and 100": ("age", "warning", 2),
        "email_clicks_90d >= 0": ("email_clicks_90d", "critical", 1),
    }
    assert sorted(report.quarantine["row_number"]) == [0, 1, 3]


# --- empty and all-null -----------------------------------------------------------------------


def test_empty_table_fails_only_the_row_count():
    table = customers().iloc[:0]
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {"row count >= 1": (None, "critical", 0)}
    assert report.blocking[0].message == (
        f"source 'customers', rule 'row count >= 1' (critical): found 0 rows [{CUSTOMERS}]"
    )
    pd.testing.assert_frame_equal(report.passed_rows, table)
    assert len(report.quarantine) == 0


def test_all_null_columns():
    table = customers(3)
    table["age"] = None
    table["email"] = None
    assert failed(check_file(table, CUSTOMERS, "customers")) == {}
    table["signup_date"] = pd.NaT
    report = check_file(table, CUSTOMERS, "customers")
    assert failed(report) == {"signup_date not null": ("signup_date", "critical", 3)}
    assert quarantined(report, "signup_date not null") == [0, 1, 2]
    assert len(report.passed_rows) == 0


# --- severities, tolerances, compiling --------------------------------------------------------


def test_compiled_suite_carries_each_rules_severity():
    compiled = compile_contract(load_contract(TRANSACTIONS), None, TRANSACTIONS)
    severities = {rule.rule: rule.severity for rule in compiled.rules}
    assert severities == {
        "order_id unique": "warning",
        "customer_id not null": "critical",
        "order_ts is timestamp": "critical",
        "order_ts not null": "critical",
        "amount is number": "critical",
        "amount not null": "critical",
        "amount between 0 and 100000": "warning",
        "sales_channel in [web, store, app]": "warning",
        "row count >= 1": "critical",
        "rows unique (failing rows <= 5%)": "warning",
    }
    assert [e["severity"] for e in compiled.expectations] == list(severities.values())
    suite = to_expectation_suite(compiled)
    assert [e.severity.value for e in suite.expectations] == list(severities.values())
    assert [e.expectation_type for e in suite.expectations][6:8] == [
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
    ]
    assert suite.expectations[-1].mostly == 0.95


def test_severity_spellings_and_tolerances(tmp_path):
    contract = write_contract(
        tmp_path,
        [
            {"name": "id", "logicalType": "string", "required": True},
            {
                "name": "colour",
                "logicalType": "string",
                "quality": [
                    {
                        "metric": "invalidValues",
                        "arguments": {"validValues": ["red"]},
                        "mustBe": 0,
                        "severity": "info",
                    },
                    {
                        "metric": "nullValues",
                        "mustBeLessThan": 50,
                        "unit": "percent",
                        "severity": "warn",
                    },
                ],
            },
            {
                "name": "size",
                "logicalType": "number",
                "quality": [{"metric": "nullValues", "mustBe": 0, "severity": "error"}],
            },
        ],
    )
    table = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "colour": ["red", "blue", None, None], "size": [1, 2, 3, 4]}
    )
    report = check_file(table, contract, "things")
    assert failed(report) == {
        "colour in [red]": ("colour", "info", 1),
        "colour not null (failing rows < 50%)": ("colour", "warning", 2),
    }
    assert outcome(report, "size not null").severity == "critical"
    assert [o.rule for o in report.warnings] == list(failed(report))
    # info is recorded only, and a rule with a tolerance quarantines nothing
    assert len(report.quarantine) == 0
    assert len(report.passed_rows) == 4
    assert report.contract_version == "2.0.0"


def test_a_property_is_read_from_its_physical_column(tmp_path):
    contract = write_contract(
        tmp_path,
        [
            {
                "name": "amount",
                "physicalName": "amount_eur",
                "logicalType": "number",
                "required": True,
                "logicalTypeOptions": {"minimum": 0},
            }
        ],
        [{"metric": "duplicateValues", "arguments": {"properties": ["amount"]}, "mustBe": 0}],
    )
    report = check_file(pd.DataFrame({"amount_eur": [5.0, -1.0, 5.0]}), contract, "things")
    assert failed(report) == {
        "amount_eur >= 0": ("amount_eur", "critical", 1),
        "rows unique": (None, "critical", 1),
    }
    assert quarantined(report, "rows unique") == [2]


def test_custom_rule_with_an_unknown_expectation_is_a_config_error(tmp_path):
    contract = write_contract(
        tmp_path,
        [
            {
                "name": "size",
                "logicalType": "number",
                "quality": [
                    {
                        "type": "custom",
                        "engine": "greatExpectations",
                        "implementation": {"type": "expect_column_values_to_be_huge"},
                    }
                ],
            }
        ],
    )
    refused = "expectation 'expect_column_values_to_be_huge' is not one segflow runs from a contract"
    with pytest.raises(ConfigError, match=refused):
        check_file(pd.DataFrame({"size": [1.0]}), contract, "things")


def test_custom_rule_with_wrong_arguments_is_a_config_error(tmp_path):
    custom = {
        "type": "custom",
        "engine": "greatExpectations",
        "implementation": "type: expect_column_values_to_be_between\nkwargs: {mostly: 7}",
    }
    contract = write_contract(tmp_path, [{"name": "size", "logicalType": "number", "quality": [custom]}])
    expected = "rule 'size expect_column_values_to_be_between': Great Expectations rejects"
    with pytest.raises(ConfigError, match=expected):
        check_file(pd.DataFrame({"size": [1.0]}), contract, "things")


@pytest.mark.parametrize(
    ("property_", "message"),
    [
        (
            {
                "name": "a",
                "logicalType": "string",
                "quality": [{"metric": "missingValues", "mustBe": 0}],
            },
            "metric 'missingValues' is not supported on a property",
        ),
        (
            {
                "name": "a",
                "logicalType": "string",
                "quality": [{"type": "sql", "query": "SELECT 1", "mustBe": 1}],
            },
            "sql rules cannot run on a DataFrame",
        ),
        (
            {
                "name": "a",
                "logicalType": "string",
                "quality": [{"metric": "nullValues", "mustBe": 0, "severity": "fatal"}],
            },
            "severity 'fatal' is not one of critical, error, warning, warn, info",
        ),
        (
            {"name": "a", "logicalType": "date", "logicalTypeOptions": {"maximum": "2030-01-01"}},
            "logicalTypeOptions ['maximum'] are not enforced by segflow for logicalType 'date'",
        ),
        ({"name": "a"}, "at schema['things'].properties['a']: logicalType is missing"),
    ],
)
def test_rules_segflow_cannot_enforce_are_rejected_when_loading(tmp_path, property_, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        compile_contract_file(write_contract(tmp_path, [property_]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just\n- a list\n", "is not an ODCS data contract"),
        ("kind: DataContract\napiVersion: v2.2.2\n", "segflow reads ODCS v3 contracts"),
        ("kind: [unclosed\n", "is not valid YAML"),
    ],
)
def test_files_that_are_not_odcs_v3_contracts_are_rejected(tmp_path, text, message):
    path = tmp_path / "contract.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_contract(path)


def test_a_missing_contract_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read data contract"):
        load_contract(tmp_path / "nope.odcs.yaml")


# --- reporting --------------------------------------------------------------------------------


def test_the_blocking_message_lists_every_blocking_rule_of_every_source():
    no_ids = customers(3).assign(customer_id=None)
    no_amount = transactions(3).drop(columns=["amount"])
    blocked = SourcesCheck(
        reports={
            "customers": check_file(no_ids, CUSTOMERS, "customers"),
            "transactions": check_file(no_amount, TRANSACTIONS, "transactions"),
        },
        passed={},
    )
    error = ContractViolation(blocked.message)
    assert str(error) == (
        "2 critical data-contract rule(s) failed:\n"
        f"- source 'customers', column 'customer_id', rule 'customer_id not null' (critical): "
        f"3 of 3 rows fail [{CUSTOMERS}]\n"
        "- column 'amount' required by the contract is missing from source 'transactions'; "
        f"found: order_id, customer_id, order_ts, sales_channel [{TRANSACTIONS}]"
    )
    assert error.exit_code == 3
    warned_only = check_file(transactions(3).assign(sales_channel="fax"), TRANSACTIONS, "transactions")
    not_blocked = SourcesCheck(reports={"transactions": warned_only}, passed={})
    assert warned_only.warnings and not not_blocked.blocking and not_blocked.message == ""


def test_validation_result_holds_severities_and_counts_but_no_row_values():
    table = customers(3)
    table["email"] = ["jane.doe@example.com", "jane.doe-at-example.com", None]
    report = check_file(table, CUSTOMERS, "customers")
    text = json.dumps(report.validation_result)
    assert "jane.doe" not in text
    results = report.validation_result["results"]
    email_pattern = "^[^@ ]+@[^@ ]+[.][^@ ]+$"
    (email,) = [r for r in results if r["expectation_config"]["kwargs"].get("regex") == email_pattern]
    assert email["expectation_config"]["severity"] == "warning"
    assert email["result"]["unexpected_count"] == 1
    assert report.validation_result["statistics"]["unsuccessful_expectations"] == 1


def test_great_expectations_does_not_fingerprint_the_checked_table():
    """GX hashes every row of a batch under 1 GB for a fingerprint in its batch markers that segflow
    never reads (0.8 s of a 100,000-customer run's contract checks); segflow/contracts/gx.py turns it
    off."""
    report = check_file(customers(3), CUSTOMERS, "customers")
    markers = report.validation_result["meta"]["batch_markers"]
    assert "ge_load_time" in markers and "pandas_data_fingerprint" not in markers


def test_check_sources_checks_sources_with_a_contract_and_passes_the_others_on():
    config = SourcesConfig(
        customers=SourceConfig(uri="customers.parquet", contract=CUSTOMERS),
        transactions=TransactionsSourceConfig(uri="transactions.parquet"),
    )
    people = customers(4)
    people.loc[[0, 2], "customer_id"] = None
    orders = transactions(5).assign(sales_channel="fax")
    checked = check_configured({"customers": people, "transactions": orders}, config)
    assert list(checked.reports) == ["customers"]
    assert checked.contract_versions == {"customers": "1.0.0"}
    # email is personal data in the contract: checked, then withheld from the later stages
    pd.testing.assert_frame_equal(checked.passed["customers"], people.iloc[[1, 3]].drop(columns="email"))
    assert checked.withheld == {"customers": ["email"]}
    assert checked.passed["transactions"] is orders
    assert list(checked.quarantine.columns) == [
        "source",
        "rule",
        "column_name",
        "severity",
        "row_number",
        "record",
    ]
    assert checked.quarantine[["column_name", "row_number"]].values.tolist() == [
        ["customer_id", 0],
        ["customer_id", 2],
    ]
    assert [o.rule for o in checked.blocking] == ["customer_id not null"]
    assert checked.message == (
        "1 critical data-contract rule(s) failed:\n- source 'customers', column 'customer_id', "
        f"rule 'customer_id not null' (critical): 2 of 4 rows fail [{CUSTOMERS}]"
    )


def test_check_sources_without_contracts_checks_nothing():
    config = SourcesConfig(customers=SourceConfig(uri="customers.parquet"))
    checked = check_configured({"customers": customers(2)}, config)
    assert checked.reports == {} and checked.blocking == [] and checked.message == ""
    assert len(checked.quarantine) == 0 and "column_name" in checked.quarantine


def test_a_key_hash_is_equal_exactly_where_pandas_holds_the_keys_equal():
    frame = pd.DataFrame(
        {
            "text": pd.array(["a", "a", "b", None, None, "a"], dtype="str"),
            "number": [0.0, -0.0, 1.0, np.nan, np.nan, 2.0],
            "mixed": pd.Series([1, 1.0, "1", None, np.nan, 1], dtype=object),
            "when": pd.to_datetime(["2024-01-01"] * 5 + ["2024-01-02"]),
            "kind": pd.Categorical(["x", "x", None, "y", None, "x"]),
            "month": pd.PeriodIndex(["2024-01", "2024-01", None, "2024-02", None, "2024-01"], freq="M"),
            "count": pd.array([1, 1, None, 2, None, 1], dtype="Int64"),
        }
    )
    for columns in (
        ["text"],
        ["number"],
        ["mixed"],
        ["kind"],
        ["month"],
        ["count"],
        ["text", "number", "mixed", "when"],
        ["kind", "month", "count"],
    ):
        hashes = key_hashes(frame, columns)
        keys = frame[columns]
        considered = keys.notna().any(axis=1).to_numpy()
        # rows GX skips (every key column missing) have no hash, the others have one
        assert hashes.isna().to_numpy().tolist() == (~considered).tolist()
        hashed = hashes[considered].to_numpy(dtype="uint64")
        same_key = keys[considered].duplicated(keep=False).to_numpy()
        same_hash = pd.Series(hashed).duplicated(keep=False).to_numpy()
        assert same_hash.tolist() == same_key.tolist(), columns
