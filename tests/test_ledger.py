"""The run ledger's input fingerprint: equal content, equal hash; any change, another hash."""

import pandas as pd
import pyarrow as pa

from segflow.ledger import input_fingerprint


def sources() -> dict[str, pd.DataFrame]:
    orders = pa.table(
        {
            "order": ["a", "b", None, "d"],
            "paid_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", None]),
            "amount": [1.5, 2.0, None, 4.0],
        }
    ).to_pandas()
    mixed = pd.DataFrame({"id": [1, "two", 3.0, None]})  # Python objects Arrow cannot type
    return {"orders": orders, "mixed": mixed}


def test_equal_content_read_twice_has_one_fingerprint():
    assert input_fingerprint(sources()) == input_fingerprint(sources())


def test_a_changed_value_order_or_column_name_changes_the_fingerprint():
    base = input_fingerprint(sources())
    changed = sources()
    changed["orders"].loc[1, "amount"] = 2.5
    reordered = sources()
    reordered["orders"] = reordered["orders"].iloc[[1, 0, 2, 3]].reset_index(drop=True)
    renamed = sources()
    renamed["orders"] = renamed["orders"].rename(columns={"amount": "total"})
    other_object = sources()
    other_object["mixed"].loc[1, "id"] = "deux"
    fingerprints = {input_fingerprint(s) for s in (changed, reordered, renamed, other_object)}
    assert base not in fingerprints and len(fingerprints) == 4
