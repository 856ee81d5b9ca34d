"""Publication logic: stable keys, the change feed, reruns of a date and key registry."""

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from segflow.errors import ConfigError
from segflow.ledger import RunFacts, RunLedger
from segflow.stores import StoredState
from segflow.tables import NOISE_LABEL
from segflow.tasks.publish import build_publication, publication_writes

DAY1, DAY2 = date(2026, 5, 1), date(2026, 5, 2)


def profiles_for(labels: np.ndarray) -> pd.DataFrame:
    sizes = pd.Series(labels).value_counts().sort_index()
    return pd.DataFrame(
        {
            "label": sizes.index,
            "size": sizes.to_numpy(),
            "share": sizes.to_numpy() / len(labels),
            "name": [f"Group {label}" for label in sizes.index],
            "features": [{"x": {"median": 1.0, "mean": 1.0, "lift": 1.0}}] * len(sizes),
            "top_categories": [{}] * len(sizes),
            "facts": [{}] * len(sizes),  # what the names state: unchanged, so a persisting key keeps its name
            "rules": [
                None
                if label == NOISE_LABEL
                else {"conditions": [f"x > {label}"], "recall": 0.9, "precision": 0.8}
                for label in sizes.index
            ],
            "description": [f"about group {label}" for label in sizes.index],
        }
    )


def publish(ids, labels, stored, as_of):
    ledger = RunLedger(as_of=as_of, id_type=pa.string())
    publication = build_publication(pd.Series(ids), labels, profiles_for(labels), stored, ledger)
    writes = publication_writes(publication, ledger, RunFacts())
    return {w.name: w.rows.to_pandas() for w in writes}, publication


def as_state(tables, as_of, changes_on=None) -> StoredState:
    return StoredState(
        snapshot=tables["customer_segments"],
        snapshot_as_of=as_of,
        definitions=tables["segment_definitions"],
        changes_on_as_of=changes_on,
    )


@pytest.fixture
def first_run():
    rng = np.random.default_rng(1)
    ids = np.array([f"c{i:05d}" for i in range(3000)])
    labels = rng.integers(0, 4, size=len(ids))
    tables, _ = publish(ids, labels, StoredState(), DAY1)
    return ids, labels, tables


def test_first_run_issues_keys_and_everyone_enters(first_run):
    ids, _labels, tables = first_run
    segments = tables["customer_segments"]
    assert sorted(segments["segment_key"].unique()) == ["seg-0001", "seg-0002", "seg-0003", "seg-0004"]
    assert len(segments) == len(ids) and segments["customer_id"].is_unique
    assert (segments["segment_since"] == DAY1).all()
    changes = tables["segment_changes"]
    assert len(changes) == len(ids) and set(changes["change_type"]) == {"entered"}
    definitions = tables["segment_definitions"]
    assert definitions["active"].all() and (definitions["first_seen"] == DAY1).all()


def test_relabelled_clusters_keep_their_keys_and_only_movers_change(first_run):
    ids, labels, tables = first_run
    relabelled = (labels + 1) % 4  # the clustering numbered the same groups differently
    rng = np.random.default_rng(2)
    movers = rng.choice(len(ids), size=60, replace=False)  # 2% change behaviour
    relabelled[movers] = (relabelled[movers] + 1) % 4
    second, _ = publish(ids, relabelled, as_state(tables, DAY1), DAY2)

    before = tables["customer_segments"].set_index("customer_id")["segment_key"]
    after = second["customer_segments"].set_index("customer_id")["segment_key"]
    moved = set(after.index[after != before[after.index]])
    assert moved == set(ids[movers])
    changes = second["segment_changes"]
    assert set(changes["customer_id"]) == moved
    assert set(changes["change_type"]) == {"moved"}
    stayed = second["customer_segments"].set_index("customer_id").drop(index=list(moved))
    assert (stayed["segment_since"] == DAY1).all()  # unchanged rows stay byte-identical
    assert (
        second["customer_segments"].set_index("customer_id").loc[list(moved), "segment_since"] == DAY2
    ).all()


def test_leavers_and_new_segments(first_run):
    ids, labels, tables = first_run
    keep = labels != 3
    new_labels = labels[keep].copy()
    new_labels[:500] = 7  # a new group forms
    second, _ = publish(ids[keep], new_labels, as_state(tables, DAY1), DAY2)
    changes = second["segment_changes"]
    assert (changes["change_type"] == "left").sum() == int((~keep).sum())
    definitions = second["segment_definitions"].set_index("segment_key")
    assert not definitions.loc["seg-0004", "active"]  # the vanished segment: inactive, kept
    assert definitions.loc["seg-0005", "active"] and definitions.loc["seg-0005", "first_seen"] == DAY2


def test_rerunning_a_date_gives_identical_tables(first_run):
    ids, labels, tables = first_run
    rng = np.random.default_rng(3)
    second_labels = labels.copy()
    second_labels[rng.choice(len(ids), 100, replace=False)] = 2
    second, _ = publish(ids, second_labels, as_state(tables, DAY1), DAY2)
    rerun, _ = publish(ids, second_labels, as_state(second, DAY2, second["segment_changes"]), DAY2)
    for name in ("customer_segments", "segment_definitions"):
        pd.testing.assert_frame_equal(second[name], rerun[name])
    columns = ["customer_id", "from_segment_key", "to_segment_key", "change_type", "changed_at"]
    pd.testing.assert_frame_equal(second["segment_changes"][columns], rerun["segment_changes"][columns])


def test_rerunning_the_first_date_reuses_its_keys(first_run):
    ids, labels, tables = first_run
    rerun, _ = publish(ids, labels, as_state(tables, DAY1, tables["segment_changes"]), DAY1)
    pd.testing.assert_frame_equal(tables["customer_segments"], rerun["customer_segments"])


def test_noise_gets_the_reserved_key(first_run):
    ids, labels, tables = first_run
    noisy = labels.copy()
    noisy[:30] = -1
    second, _ = publish(ids, noisy, as_state(tables, DAY1), DAY2)
    segments = second["customer_segments"].set_index("customer_id")
    assert (segments.loc[ids[:30], "segment_key"] == "seg-0000").all()


def test_an_older_date_than_the_current_publication_is_refused(first_run):
    ids, labels, tables = first_run
    with pytest.raises(ConfigError, match="before the current publication"):
        publish(ids, labels, as_state(tables, DAY2), DAY1)
