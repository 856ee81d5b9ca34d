"""Stable holdout groups: a keyed hash places every customer, so the group never depends on the night,
the model or who else is in the base.

Each customer's number is HMAC-SHA256(salt, customer id) read as a fraction in [0, 1): uniform and
independent of the segment, so holding out the customers below `holdout_share` holds out that share of
every segment (within sampling noise), and a customer keeps their group across nights and retrains.
Changing the salt reshuffles everyone; raising the share only adds customers to the holdout.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import numpy as np
import pandas as pd

from segflow.tables import CUSTOMER_ID

HOLDOUT_COLUMNS = [CUSTOMER_ID, "segment_key", "holdout", "assigned_at"]


def holdout_numbers(customer_ids: pd.Series, salt: str) -> np.ndarray:
    """Each customer's place in [0, 1): the first 8 bytes of HMAC-SHA256(salt, id as text)."""
    keyed = hmac.new(salt.encode("utf-8"), digestmod=hashlib.sha256)
    digests = []
    for customer_id in customer_ids.astype(str).tolist():
        mac = keyed.copy()  # the key's pads are hashed once, not per customer (2x faster)
        mac.update(customer_id.encode("utf-8"))
        digests.append(mac.digest()[:8])
    return np.frombuffer(b"".join(digests), dtype=">u8").astype(np.float64) / 2.0**64


def holdout_table(
    snapshot: pd.DataFrame, stored: pd.DataFrame | None, share: float, salt: str, as_of: date
) -> pd.DataFrame:
    """segment_holdouts for the customers of a customer_segments snapshot. A row keeps its assigned_at
    while the customer's segment and group stay as they were; otherwise it is assigned as of `as_of`."""
    table = pd.DataFrame(
        {
            CUSTOMER_ID: snapshot[CUSTOMER_ID].to_numpy(),
            "segment_key": snapshot["segment_key"].to_numpy(),
            "holdout": holdout_numbers(snapshot[CUSTOMER_ID], salt) < share,
        }
    )
    assigned = pd.Series(pd.Timestamp(as_of), index=table.index, dtype="datetime64[us]")
    if stored is not None and len(stored):
        before = table[[CUSTOMER_ID]].merge(stored[HOLDOUT_COLUMNS], on=CUSTOMER_ID, how="left")
        kept = (before["segment_key"].to_numpy() == table["segment_key"].to_numpy()) & (
            before["holdout"].to_numpy() == table["holdout"].to_numpy()
        )
        earlier = pd.to_datetime(before["assigned_at"]).astype("datetime64[us]")
        assigned = assigned.where(~kept, earlier)
    return table.assign(assigned_at=assigned)[HOLDOUT_COLUMNS]


def holdout_sizes(holdouts: pd.DataFrame) -> pd.DataFrame:
    """Per segment: its customers, how many are held out, and their share."""
    sizes = holdouts.groupby("segment_key", sort=True)["holdout"].agg(customers="size", holdout="sum")
    sizes["holdout"] = sizes["holdout"].astype(int)
    sizes["share"] = sizes["holdout"] / sizes["customers"]
    return sizes.reset_index()
