"""A table checked in parts (dask mode's partitions) and added up gives the check of the whole table:
the same verdicts, counts, wording, quarantine and validation-result statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segflow.contracts.check import check_table, combine_reports
from segflow.contracts.odcs import contract_for
from tests.test_quality import TRANSACTIONS, transactions

PARTS = 3


def flawed_transactions() -> pd.DataFrame:
    """Transactions with flaws of every kind the demo contract judges: null customers, unreadable
    timestamps and amounts, negative amounts, unknown channels, and repeated rows (a repeat
    stays with its customer, as co-partitioning by customer keeps it)."""
    table = transactions(300)
    table["order_ts"] = table["order_ts"].astype(str)
    table.loc[[3, 50, 251], "customer_id"] = None
    table.loc[[7, 120], "order_ts"] = "not a time"
    table.loc[[9, 99, 199, 299], "amount"] = -5.0
    table.loc[[11, 12], "sales_channel"] = "fax"
    repeats = table.iloc[[20, 21, 140, 141, 142]]
    return pd.concat([table, repeats], ignore_index=True)


def parts_by_customer(table: pd.DataFrame) -> list[pd.DataFrame]:
    """The table split by a hash of the customer id, each part keeping its rows' places (index)."""
    keys = pd.util.hash_array(table["customer_id"].fillna("").to_numpy(object)) % PARTS
    return [table[keys == part] for part in range(PARTS)]


def test_parts_added_up_give_the_whole_tables_outcomes_and_quarantine():
    table = flawed_transactions()
    contract = contract_for(TRANSACTIONS, "transactions")
    whole = check_table(table, contract, "transactions")
    parts = [
        check_table(part, contract, "transactions", part.index.to_numpy())
        for part in parts_by_customer(table)
    ]
    assert all(len(part.quarantine) < len(whole.quarantine) for part in parts)  # the flaws are spread

    combined = combine_reports(parts, contract)

    assert [(o.rule, o.success, o.unexpected_count, o.row_count, o.message) for o in combined.outcomes] == [
        (o.rule, o.success, o.unexpected_count, o.row_count, o.message) for o in whole.outcomes
    ]
    assert not all(o.success for o in whole.outcomes)  # the comparison covers failed rules
    key = ["rule", "row_number"]
    assert (
        combined.quarantine.sort_values(key)
        .reset_index(drop=True)[key]
        .equals(whole.quarantine.sort_values(key).reset_index(drop=True)[key])
    )
    assert (combined.rows_checked, combined.rows_passed, combined.rows_quarantined) == (
        whole.rows_checked,
        whole.rows_passed,
        whole.rows_quarantined,
    )
    assert combined.validation_result["statistics"] == whole.validation_result["statistics"]


def test_a_percent_threshold_is_applied_to_the_totals_not_to_each_part():
    """5% repeated rows allowed: one part far above it, the whole below it, passes; the whole above
    it fails although two parts are clean."""
    table = transactions(300)
    contract = contract_for(TRANSACTIONS, "transactions")
    rule = "rows unique (failing rows <= 5%)"
    parts = parts_by_customer(table)
    crowded = parts[0].iloc[:30]
    within = [pd.concat([parts[0], crowded.iloc[:10]]), parts[1], parts[2]]  # 10 of 310 rows: 3.2%
    checked = [check_table(p, contract, "transactions", np.arange(len(p))) for p in within]
    assert not next(o for o in checked[0].outcomes if o.rule == rule).success or len(parts[0]) > 200
    assert next(o for o in combine_reports(checked, contract).outcomes if o.rule == rule).success

    over = [pd.concat([parts[0], crowded]), parts[1], parts[2]]  # 30 of 330 rows: 9.1%
    checked = [check_table(p, contract, "transactions", np.arange(len(p))) for p in over]
    combined = next(o for o in combine_reports(checked, contract).outcomes if o.rule == rule)
    assert not combined.success
    assert combined.unexpected_count == 30 and combined.row_count == 330
    assert "(9.09%, allowed <= 5%)" in combined.message


def test_a_rule_that_could_not_be_evaluated_in_a_part_fails_the_whole_with_its_reason():
    contract = contract_for(TRANSACTIONS, "transactions")
    table = transactions(40)
    parts = [check_table(p, contract, "transactions", p.index.to_numpy()) for p in parts_by_customer(table)]
    broken = parts[1].outcomes[-1]
    parts[1].outcomes[-1] = type(broken)(
        **{
            **broken.__dict__,
            "success": False,
            "evaluated": False,
            "message": "x could not be evaluated: boom",
        }
    )
    combined = combine_reports(parts, contract).outcomes[-1]
    assert (combined.success, combined.evaluated, combined.message) == (
        False,
        False,
        "x could not be evaluated: boom",
    )


def test_parts_that_do_not_follow_the_contract_are_refused():
    contract = contract_for(TRANSACTIONS, "transactions")
    table = transactions(40)
    parts = [check_table(p, contract, "transactions") for p in parts_by_customer(table)]
    parts[2].outcomes.reverse()
    with pytest.raises(ValueError, match="do not follow the contract's rules"):
        combine_reports(parts, contract)
