"""Publish: stable segment keys, the change feed, and the tables swapped in atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.errors import ConfigError
from segflow.ledger import RunFacts, RunLedger
from segflow.locks import publish_in_turn
from segflow.retry import IO_RETRY_POLICY
from segflow.rfm import scores_table
from segflow.stores import PUBLISHING_STATUSES, PublicationStore, StoredState, TableWrite, read_state
from segflow.tables import CUSTOMER_ID, NOISE_LABEL, NOISE_NAME, NOISE_SEGMENT_KEY, TABLES, is_in, to_arrow
from segflow.timing import timed

MIN_JACCARD = 0.4
SNAPSHOT_COLUMNS = [CUSTOMER_ID, "segment_key", "segment_since", "changed_at"]
TABLE_COLUMNS = {name: [column for column, _ in spec.columns] for name, spec in TABLES.items()}


@dataclass
class Publication:
    """Every table a run writes, ready for any storage target."""

    run_id: str
    as_of: date
    writes: list[TableWrite]
    counts: dict[str, int]
    drift: dict[str, float | None] = field(default_factory=dict)
    keys: dict[int, str] = field(default_factory=dict)  # cluster label -> segment key
    migration: pd.DataFrame = field(default_factory=pd.DataFrame)  # last publication's keys x this run's
    status: str = "published"  # or "scored": customers assigned to the published segments
    message: str = "published"
    based_on: dict[str, str | None] = field(default_factory=dict)  # StoredState.current_runs

    def table(self, name: str) -> pd.DataFrame:
        return next(w.rows for w in self.writes if w.name == name).to_pandas()

    def including(self, write: TableWrite) -> Publication:
        """The same publication with one more table written in the same swap."""
        return replace(self, writes=[*self.writes, write])


def as_of_timestamp(as_of: date) -> pd.Timestamp:
    return pd.Timestamp(datetime.combine(as_of, datetime.min.time()))


def state_before(stored: StoredState, as_of: date) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The membership snapshot as it was before `as_of`, and the snapshot a rerun of it replaces."""
    empty = pd.DataFrame(columns=SNAPSHOT_COLUMNS)
    if stored.snapshot is None or stored.snapshot_as_of is None:
        return empty, None
    if stored.snapshot_as_of < as_of:
        return stored.snapshot[SNAPSHOT_COLUMNS], None
    if stored.snapshot_as_of > as_of:
        raise ConfigError(
            f"as-of {as_of} is before the current publication ({stored.snapshot_as_of}); "
            "publishing an older date would rewind the CRM: run the dates in order"
        )
    changes = stored.changes_on_as_of if stored.changes_on_as_of is not None else empty
    changed = is_in(stored.snapshot[CUSTOMER_ID], changes[CUSTOMER_ID])
    restored = changes[changes["from_segment_key"].notna()]
    restored = pd.DataFrame(
        {
            CUSTOMER_ID: restored[CUSTOMER_ID],
            "segment_key": restored["from_segment_key"],
            "segment_since": restored["from_segment_since"],
            "changed_at": pd.to_datetime(restored["from_segment_since"]),
        }
    )
    before = pd.concat([stored.snapshot.loc[~changed, SNAPSHOT_COLUMNS], restored], ignore_index=True)
    return before, stored.snapshot[SNAPSHOT_COLUMNS]


def overlap_matches(
    assignments: pd.DataFrame, snapshot: pd.DataFrame, eligible_keys: set[str] | None = None
) -> dict[int, str]:
    """Pair new labels with old keys by an optimal assignment on member overlap (Jaccard)."""
    from scipy.optimize import linear_sum_assignment

    old = snapshot[snapshot["segment_key"] != NOISE_SEGMENT_KEY]
    if eligible_keys is not None:
        old = old[old["segment_key"].isin(eligible_keys)]
    new = assignments[assignments["label"] != NOISE_LABEL]
    if old.empty or new.empty:
        return {}
    overlap = pd.crosstab(
        new.merge(old[[CUSTOMER_ID, "segment_key"]], on=CUSTOMER_ID)["label"],
        new.merge(old[[CUSTOMER_ID, "segment_key"]], on=CUSTOMER_ID)["segment_key"],
    )
    if overlap.empty:
        return {}
    new_sizes = new["label"].value_counts().reindex(overlap.index).to_numpy()[:, None]
    old_sizes = old["segment_key"].value_counts().reindex(overlap.columns).to_numpy()[None, :]
    jaccard = overlap.to_numpy() / (new_sizes + old_sizes - overlap.to_numpy())
    rows, cols = linear_sum_assignment(-jaccard)
    return {
        int(overlap.index[r]): str(overlap.columns[c])
        for r, c in zip(rows, cols, strict=True)
        if jaccard[r, c] >= MIN_JACCARD
    }


def next_keys(used: set[str], count: int) -> list[str]:
    """Fresh keys after the highest ever issued; a key is never reused."""
    highest = max((int(k.split("-")[1]) for k in used if k.startswith("seg-")), default=0)
    return [f"seg-{highest + i:04d}" for i in range(1, count + 1)]


def assign_segment_keys(
    assignments: pd.DataFrame,
    before: pd.DataFrame,
    replaced: pd.DataFrame | None,
    definitions: pd.DataFrame,
    as_of: date,
) -> dict[int, str]:
    """Each label's segment key: last publication's key if it persists, else a new one."""
    keys = overlap_matches(assignments, before)
    if replaced is not None:  # a rerun of the same date reuses the keys that date first issued
        issued_today = set(definitions.loc[definitions["first_seen"] == as_of, "segment_key"])
        leftover = assignments[~assignments["label"].isin(list(keys))]
        for label, key in overlap_matches(leftover, replaced, issued_today).items():
            if key not in keys.values():
                keys[label] = key
    unmatched = sorted(
        int(label) for label in assignments["label"].unique() if label != NOISE_LABEL and label not in keys
    )
    issued = set(definitions["segment_key"]) | set(before["segment_key"]) | {NOISE_SEGMENT_KEY}
    keys.update(zip(unmatched, next_keys(issued, len(unmatched)), strict=True))
    if (assignments["label"] == NOISE_LABEL).any():
        keys[NOISE_LABEL] = NOISE_SEGMENT_KEY
    return keys


def segment_names(
    profiles: pd.DataFrame, keys: dict[int, str], definitions: pd.DataFrame
) -> dict[str, tuple[str, str, str]]:
    """Name, description and name facts (JSON) per key. A persisting segment keeps its name while the
    facts its name states still hold, unless its algorithm defines the name (the RFM map's cells);
    otherwise it takes this run's name. Names stay unique: a fresh name that a kept one already uses
    says its share of customers, then its key."""
    known_names = dict(zip(definitions["segment_key"], definitions["segment_name"], strict=True))
    known_facts = dict(
        zip(definitions["segment_key"], definitions.get("name_facts", pd.Series(dtype=object)), strict=False)
    )
    candidates = {}
    for row in profiles.itertuples():
        key, facts = keys[row.label], json.dumps(row.facts, sort_keys=True)
        defined = getattr(row, "name_defined", False)
        kept = not defined and key in known_names and known_facts.get(key) == facts
        candidates[key] = (known_names[key] if kept else row.name, row.description, facts, kept, row.share)
    names: dict[str, tuple[str, str, str]] = {}
    taken: set[str] = set()
    for key in sorted(candidates, key=lambda key: (not candidates[key][3], key)):
        name, description, facts, _, share = candidates[key]
        for fallback in (f"{name}, {share:.1%} of customers", f"{name}, {key}"):
            if name not in taken:
                break
            name = fallback
        taken.add(name)
        names[key] = (name, description, facts)
    return names


def membership_tables(
    assignments: pd.DataFrame,
    keys: dict[int, str],
    names: dict[str, tuple[str, str]],
    before: pd.DataFrame,
    run_id: str,
    as_of: date,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The new customer_segments snapshot and this run's segment_changes rows."""
    stamp = as_of_timestamp(as_of)
    current = pd.DataFrame(
        {CUSTOMER_ID: assignments[CUSTOMER_ID], "segment_key": assignments["label"].map(keys)}
    )
    merged = current.merge(before, on=CUSTOMER_ID, how="outer", suffixes=("", "_before"), indicator=True)
    stayed = merged["segment_key"] == merged["segment_key_before"]
    snapshot = merged[merged["_merge"] != "right_only"].copy()
    kept = stayed[snapshot.index]
    snapshot["segment_since"] = np.where(kept, snapshot["segment_since"], as_of)
    snapshot["changed_at"] = pd.to_datetime(np.where(kept, snapshot["changed_at"], stamp))
    snapshot["segment_name"] = snapshot["segment_key"].map(lambda k: names[k][0])

    moved = merged[~stayed]
    change_type = np.select(
        [moved["_merge"] == "left_only", moved["_merge"] == "right_only"], ["entered", "left"], "moved"
    )
    changes = pd.DataFrame(
        {
            "run_id": run_id,
            "as_of": as_of,
            CUSTOMER_ID: moved[CUSTOMER_ID],
            "from_segment_key": moved["segment_key_before"],
            "to_segment_key": moved["segment_key"],
            "change_type": change_type,
            "from_segment_since": moved["segment_since"],
            "changed_at": stamp,
        }
    )
    snapshot = snapshot.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True)
    return snapshot, changes.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True)


def definitions_table(
    definitions: pd.DataFrame, names: dict[str, tuple[str, str, str]], as_of: date
) -> pd.DataFrame:
    """Every key ever issued; the active ones get this run's name, description, name facts and
    last_seen."""
    columns = ["segment_name", "description", "first_seen", "last_seen", "active", "name_facts"]
    table = (
        definitions.set_index("segment_key").reindex(columns=columns)
        if not definitions.empty
        else pd.DataFrame(columns=columns).rename_axis("segment_key")
    )
    table["active"] = False
    for key, (name, description, facts) in names.items():
        first_seen = table.at[key, "first_seen"] if key in table.index else as_of
        table.loc[key, columns] = [name, description, first_seen, as_of, True, facts]
    return table.reset_index().sort_values("segment_key").reset_index(drop=True)


def profiles_table(
    profiles: pd.DataFrame,
    keys: dict[int, str],
    names: dict[str, tuple[str, str]],
    run_id: str,
    as_of: date,
) -> pd.DataFrame:
    segment_keys = profiles["label"].map(keys)
    return (
        pd.DataFrame(
            {
                "run_id": run_id,
                "as_of": as_of,
                "segment_key": segment_keys,
                "segment_name": [names[k][0] for k in segment_keys],
                "description": [names[k][1] for k in segment_keys],
                "size": profiles["size"],
                "share": profiles["share"],
                "features": [json.dumps(f, sort_keys=True) for f in profiles["features"]],
                "top_categories": [json.dumps(c, sort_keys=True) for c in profiles["top_categories"]],
                "rules": [json.dumps(r, ensure_ascii=False) if r else None for r in profiles["rules"]],
            }
        )
        .sort_values("segment_key")
        .reset_index(drop=True)
    )


def migration_matrix(before: pd.DataFrame, snapshot: pd.DataFrame) -> pd.DataFrame:
    """Customers by last publication's segment (rows; 'new': not in it) and this run's (columns; 'left')."""
    if before.empty:
        return pd.DataFrame()
    merged = snapshot[[CUSTOMER_ID, "segment_key"]].merge(
        before[[CUSTOMER_ID, "segment_key"]], on=CUSTOMER_ID, how="outer", suffixes=("", "_before")
    )
    return pd.crosstab(merged["segment_key_before"].fillna("new"), merged["segment_key"].fillna("left"))


def drift_measures(snapshot: pd.DataFrame, before: pd.DataFrame) -> dict[str, float | None]:
    """How far this publication moves from the last: customers who changed, and the size mix."""
    if before.empty:
        return {"changed_share": None, "size_shift": None}
    common = snapshot[[CUSTOMER_ID, "segment_key"]].merge(
        before[[CUSTOMER_ID, "segment_key"]], on=CUSTOMER_ID, suffixes=("", "_before")
    )
    changed = float((common["segment_key"] != common["segment_key_before"]).mean()) if len(common) else 1.0
    new_mix = snapshot["segment_key"].value_counts(normalize=True)
    old_mix = before["segment_key"].value_counts(normalize=True)
    shift = 0.5 * float(new_mix.sub(old_mix, fill_value=0.0).abs().sum())
    return {"changed_share": changed, "size_shift": shift}


def build_publication(
    customer_ids: pd.Series,
    labels: np.ndarray,
    profiles: pd.DataFrame,
    stored: StoredState,
    ledger: RunLedger,
    rfm_scores: np.ndarray | None = None,
) -> Publication:
    """The segment tables of a run, keyed so that persisting segments keep their identity, and with
    RFM features each customer's RFM scores (`customer_rfm_scores`), swapped in with them."""
    run_id, as_of, id_type = ledger.run_id, ledger.as_of, ledger.id_type
    assignments = pd.DataFrame({CUSTOMER_ID: customer_ids.to_numpy(), "label": labels})
    before, replaced = state_before(stored, as_of)
    definitions = (
        stored.definitions
        if stored.definitions is not None
        else pd.DataFrame(
            columns=["segment_key", "segment_name", "description", "first_seen", "last_seen", "active"]
        )
    )
    keys = assign_segment_keys(assignments, before, replaced, definitions, as_of)
    names = segment_names(profiles, keys, definitions)
    snapshot, changes = membership_tables(assignments, keys, names, before, run_id, as_of)
    writes = [
        TableWrite("customer_segments", to_arrow("customer_segments", snapshot, id_type), "all"),
        TableWrite("segment_changes", to_arrow("segment_changes", changes, id_type), "as_of"),
        TableWrite(
            "segment_profiles",
            to_arrow("segment_profiles", profiles_table(profiles, keys, names, run_id, as_of), id_type),
            "as_of",
        ),
        TableWrite(
            "segment_definitions",
            to_arrow("segment_definitions", definitions_table(definitions, names, as_of), id_type),
            "all",
        ),
    ]
    if rfm_scores is not None:
        writes.append(
            TableWrite("customer_rfm_scores", scores_table(customer_ids, rfm_scores, as_of, id_type), "all")
        )
    counts = {
        "customers": len(snapshot),
        "changes": len(changes),
        "segments": len(names),
        "new_segments": sum(1 for k in names if k not in set(definitions["segment_key"])),
        "quarantined_rows": len(ledger.quarantine),
    }
    return Publication(
        run_id=run_id,
        as_of=as_of,
        writes=writes,
        counts=counts,
        drift=drift_measures(snapshot, before),
        keys=keys,
        migration=migration_matrix(before, snapshot),
        based_on=stored.current_runs,
    )


def scored_membership(
    scored: pd.DataFrame,
    snapshot: pd.DataFrame,
    changes_on_as_of: pd.DataFrame,
    names: dict[str, str],
    run_id: str,
    as_of: date,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The snapshot with the scored customers' rows updated, the as-of date's net changes, and how
    many customers this run moved. Customers who were not scored keep their rows untouched."""
    stamp = as_of_timestamp(as_of)
    current = snapshot.set_index(CUSTOMER_ID)
    incoming = scored.set_index(CUSTOMER_ID)["segment_key"]
    prior = current["segment_key"].reindex(incoming.index)
    moving = incoming.index[prior.to_numpy() != incoming.to_numpy()]
    if len(moving) == 0:
        return snapshot, changes_on_as_of, 0

    earlier = changes_on_as_of.set_index(CUSTOMER_ID).reindex(moving)  # moved already on this date
    had_change = earlier["run_id"].notna().to_numpy()
    start_key = np.where(had_change, earlier["from_segment_key"], current["segment_key"].reindex(moving))
    since_before = current["segment_since"].reindex(moving)
    start_since = np.where(had_change, earlier["from_segment_since"], since_before)
    to_key = incoming.loc[moving].to_numpy()
    back_to_start = pd.notna(start_key) & (start_key == to_key)

    rows = pd.DataFrame(
        {
            CUSTOMER_ID: moving,
            "segment_key": to_key,
            "segment_name": [names[key] for key in to_key],
            "segment_since": np.where(back_to_start, start_since, as_of),
            "changed_at": np.where(back_to_start, pd.to_datetime(start_since), stamp),
        }
    )
    rows["changed_at"] = pd.to_datetime(rows["changed_at"])
    kept = snapshot[~is_in(snapshot[CUSTOMER_ID], moving)]
    updated = pd.concat([kept, rows[kept.columns]], ignore_index=True)

    net = pd.DataFrame(
        {
            "run_id": run_id,
            "as_of": as_of,
            CUSTOMER_ID: moving,
            "from_segment_key": start_key,
            "to_segment_key": to_key,
            "change_type": np.where(pd.isna(start_key), "entered", "moved"),
            "from_segment_since": start_since,
            "changed_at": stamp,
        }
    )[~back_to_start]
    others = changes_on_as_of[~is_in(changes_on_as_of[CUSTOMER_ID], moving)]
    changes = pd.concat([others, net[others.columns] if len(others.columns) else net], ignore_index=True)
    return (
        updated.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True),
        changes.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True),
        len(moving),
    )


def build_scored_publication(
    scored: pd.DataFrame, stored: StoredState, ledger: RunLedger, model_run_id: str
) -> Publication:
    """The tables a scoring run rewrites: the snapshot and the as-of date's changes."""
    if stored.snapshot is None or stored.snapshot_as_of is None:
        raise ConfigError("nothing is published yet: run `segflow run` before scoring")
    if ledger.as_of < stored.snapshot_as_of:
        raise ConfigError(
            f"as-of {ledger.as_of} is before the current publication ({stored.snapshot_as_of}); "
            "scoring an older date would rewind the CRM"
        )
    definitions = stored.definitions if stored.definitions is not None else pd.DataFrame()
    names = dict(zip(definitions.get("segment_key", []), definitions.get("segment_name", []), strict=True))
    names.setdefault(NOISE_SEGMENT_KEY, NOISE_NAME)
    empty_changes = pd.DataFrame(columns=TABLE_COLUMNS["segment_changes"])
    changes_today = stored.changes_on_as_of if stored.changes_on_as_of is not None else empty_changes
    snapshot, changes, moved = scored_membership(
        scored, stored.snapshot, changes_today, names, ledger.run_id, ledger.as_of
    )
    id_type = ledger.id_type
    return Publication(
        run_id=ledger.run_id,
        as_of=ledger.as_of,
        writes=[
            TableWrite("customer_segments", to_arrow("customer_segments", snapshot, id_type), "all"),
            TableWrite("segment_changes", to_arrow("segment_changes", changes, id_type), "as_of"),
        ],
        counts={
            "customers": len(scored),
            "changes": moved,
            "segments": int(scored["segment_key"].nunique()),
            "new_segments": 0,
            "quarantined_rows": len(ledger.quarantine),
        },
        status="scored",
        message=(
            f"scored {len(scored):,} customers with the model of run {model_run_id}; "
            f"{moved:,} moved or entered"
        ),
        based_on=stored.current_runs,
    )


def publication_writes(publication: Publication, ledger: RunLedger, facts: RunFacts) -> list[TableWrite]:
    """The segment tables plus the run's segmentation_runs row and quarantine."""
    message = publication.message
    if facts.gate_override is not None:
        message = f"published despite the gate, on override: {facts.gate_override}"
    run_row = ledger.row(publication.status, message, facts, rows_published=publication.counts["customers"])
    return [*publication.writes, *ledger.writes(run_row)]


@task(name="build-publication", cache_policy=NO_CACHE)
@timed
def build_publication_task(
    customer_ids: pd.Series,
    labels: np.ndarray,
    profiles: pd.DataFrame,
    stored: StoredState,
    ledger: RunLedger,
    rfm_scores: np.ndarray | None = None,
) -> Publication:
    return build_publication(customer_ids, labels, profiles, stored, ledger, rfm_scores)


def change_preview(publication: Publication, stored: StoredState) -> dict[str, Any]:
    """What publishing would change, for a dry run: per segment the customers entering (new to the
    base), moving in, moving out and leaving; the keys issued and retired; the share who moved."""
    changes = publication.table("segment_changes")
    definitions = publication.table("segment_definitions")
    names = dict(zip(definitions["segment_key"], definitions["segment_name"], strict=True))
    was_active = (
        set()
        if stored.definitions is None
        else set(stored.definitions.loc[stored.definitions["active"], "segment_key"])
    )
    active = set(definitions.loc[definitions["active"], "segment_key"])
    counted = {
        "entered": changes[changes["change_type"] == "entered"]["to_segment_key"],
        "moved_in": changes[changes["change_type"] == "moved"]["to_segment_key"],
        "moved_out": changes[changes["change_type"] == "moved"]["from_segment_key"],
        "left": changes[changes["change_type"] == "left"]["from_segment_key"],
    }
    by_key = {kind: keys.value_counts().to_dict() for kind, keys in counted.items()}
    segments = [
        {
            "segment_key": key,
            "segment_name": names.get(key, key),
            **{kind: int(by_key[kind].get(key, 0)) for kind in counted},
        }
        for key in sorted(active | set().union(*(set(keys) for keys in counted.values())))
    ]
    return {
        "by_segment": segments,
        "entered": len(counted["entered"]),
        "moved": len(counted["moved_in"]),
        "left": len(counted["left"]),
        "new_keys": sorted(active - was_active),
        "retired_keys": sorted(was_active - active),
        "changed_share": publication.drift.get("changed_share"),
    }


@task(name="change-preview", cache_policy=NO_CACHE)
@timed
def change_preview_task(publication: Publication, stored: StoredState) -> dict[str, Any]:
    preview = change_preview(publication, stored)
    get_run_logger().info(
        "dry run: would publish %d entered, %d moved, %d left; new keys %s, retired keys %s",
        preview["entered"],
        preview["moved"],
        preview["left"],
        preview["new_keys"] or "none",
        preview["retired_keys"] or "none",
    )
    return preview


@task(name="build-scored-publication", cache_policy=NO_CACHE)
@timed
def build_scored_publication_task(
    scored: pd.DataFrame, stored: StoredState, ledger: RunLedger, model_run_id: str
) -> Publication:
    return build_scored_publication(scored, stored, ledger, model_run_id)


def publish_to(stores: list[PublicationStore], publication: Publication, writes: list[TableWrite]) -> list:
    """Swap the writes into every target that does not hold this run yet (a retry after a commit),
    and return those: all locked, and each checked to hold still the publication the run built on."""
    pending = [store for store in stores if store.run_status(publication.run_id) != publication.status]
    publish_in_turn(pending, publication.as_of, writes, publication.based_on)
    return pending


@task(name="publish", cache_policy=NO_CACHE, **IO_RETRY_POLICY)
@timed
def publish_task(
    stores: list[PublicationStore], publication: Publication, ledger: RunLedger, facts: RunFacts
) -> dict[str, int]:
    """Write the segment tables and the run's record to every target, each swapping all at once."""
    written = publish_to(stores, publication, publication_writes(publication, ledger, facts))
    for store in stores:
        get_run_logger().info(
            "publish: %s %s run %s (as of %s): %s",
            store.describe(),
            "now holds" if store in written else "already held",
            publication.run_id,
            publication.as_of,
            publication.counts,
        )
    return publication.counts


@task(name="read-publication-state", cache_policy=NO_CACHE, **IO_RETRY_POLICY)
@timed
def read_state_task(stores: list[PublicationStore], as_of: date) -> StoredState:
    return read_state(stores, as_of)


def record_run(
    stores: list[PublicationStore], ledger: RunLedger, status: str, message: str, facts: RunFacts
) -> None:
    """Record a run that published no segments, with its quarantine; segment tables stay as they were.
    A target that already holds this run's publication (a later target failed) keeps its record."""
    writes = ledger.writes(ledger.row(status, message, facts))
    for store in stores:
        if store.run_status(ledger.run_id) not in PUBLISHING_STATUSES:
            store.publish(ledger.as_of, writes)


@task(name="record-run", cache_policy=NO_CACHE, **IO_RETRY_POLICY)
@timed
def record_run_task(
    stores: list[PublicationStore], ledger: RunLedger, status: str, message: str, facts: RunFacts
) -> None:
    record_run(stores, ledger, status, message, facts)
    get_run_logger().warning("run %s as of %s ended %s: %s", ledger.run_id, ledger.as_of, status, message)
