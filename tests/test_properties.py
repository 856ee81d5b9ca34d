"""Properties of the pure stage functions, on generated customer-like tables: arbitrary column
names, sizes, nulls, extreme values and Unicode ids. A table the input accepts yields one segment
per customer, each customer published exactly once, and only finite numbers reach the clustering;
a table that breaks a contract rule is rejected naming that rule.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segflow.clustering import assign_segments, fit_segmentation
from segflow.config import ClusteringConfig, FeaturesConfig, PreprocessConfig, SourcesConfig, build_config
from segflow.errors import ConfigError, SegflowError
from segflow.ledger import RunFacts, RunLedger
from segflow.stores import StoredState
from segflow.tasks.features import RFM_COLUMNS, build_customer_features
from segflow.tasks.preprocess import prepare_features
from segflow.tasks.profile import profile_segments
from segflow.tasks.publish import build_publication, publication_writes
from segflow.tasks.scale import fit_scaling
from tests.helpers import check_file

AS_OF = date(2026, 11, 1)
FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SLOW = settings(FAST, max_examples=10)

# --- generators ---------------------------------------------------------------------------------

# Column names in any script, with spaces, quotes and SQL-looking text; never the published id name.
column_names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda name: name != "customer_id" and "=" not in name
)
unicode_ids = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10)
integer_ids = st.integers(min_value=-(2**62), max_value=2**62)
extreme_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 2.0**53 + 1]),
    st.integers(min_value=-(10**15), max_value=10**15).map(float),
    st.none(),
)
categories = st.one_of(
    st.none(),
    st.sampled_from(["Web", " web", "WEB\u200b", "stor\u0065\u0301", "stor\u00e9", "🛒", "", "x\x00"]),
)


def distinct(strategy, size):
    return st.lists(strategy, min_size=size, max_size=size, unique=True)


@st.composite
def customer_tables(draw, min_rows: int = 4, max_rows: int = 40):
    """A customer table: a unique non-null id column and numeric and category columns of any name."""
    n_rows = draw(st.integers(min_rows, max_rows))
    names = draw(distinct(column_names, 4))
    id_name, number_names, category_name = names[0], names[1:3], names[3]
    ids = draw(distinct(integer_ids if draw(st.booleans()) else unicode_ids, n_rows))
    table = pd.DataFrame({id_name: ids})
    for name in number_names:
        table[name] = pd.array(
            draw(st.lists(extreme_numbers, min_size=n_rows, max_size=n_rows)), dtype="Float64"
        )
    table[category_name] = draw(st.lists(categories, min_size=n_rows, max_size=n_rows))
    return table, id_name, number_names, category_name


def features_config(numbers: list[str], category: str) -> FeaturesConfig:
    return FeaturesConfig(numeric=numbers, categorical=[category])


# --- features: RFM per customer -----------------------------------------------------------------


@st.composite
def transaction_tables(draw):
    id_name, ts_name, amount_name = draw(distinct(column_names, 3))
    owners = draw(distinct(unicode_ids, draw(st.integers(1, 12))))
    n_rows = draw(st.integers(1, 60))
    day = st.integers(-800, 30).map(lambda days: datetime(2026, 11, 1) + timedelta(days=days, hours=7))
    table = pd.DataFrame(
        {
            id_name: draw(
                st.lists(st.one_of(st.sampled_from(owners), st.none()), min_size=n_rows, max_size=n_rows)
            ),
            ts_name: draw(st.lists(st.one_of(day, st.none()), min_size=n_rows, max_size=n_rows)),
            amount_name: draw(st.lists(extreme_numbers, min_size=n_rows, max_size=n_rows)),
        }
    )
    return table, id_name, ts_name, amount_name


@FAST
@given(transaction_tables())
def test_rfm_gives_one_row_per_customer_with_a_countable_purchase(case):
    table, id_name, ts_name, amount_name = case
    sources = SourcesConfig.model_validate(
        {
            "transactions": {
                "uri": "t.parquet",
                "id_column": id_name,
                "timestamp_column": ts_name,
                "amount_column": amount_name,
            }
        }
    )
    features = build_customer_features({"transactions": table}, sources, AS_OF)
    amounts = pd.to_numeric(table[amount_name], errors="coerce")
    usable = table[id_name].notna() & table[ts_name].notna() & amounts.notna()
    counted = usable & (pd.to_datetime(table[ts_name]) < pd.Timestamp(AS_OF + timedelta(days=1)))
    assert sorted(features.table["customer_id"]) == sorted(table.loc[counted, id_name].unique())
    assert len(features.unusable_transactions) == int((~usable).sum())
    assert features.transactions_after_as_of == int((usable & ~counted).sum())
    expected_frequency = table.loc[counted, id_name].value_counts()
    frequency = features.table.set_index("customer_id")["frequency"]
    assert all(frequency[i] == n for i, n in expected_frequency.items())
    assert (features.table["recency_days"] >= 0).all() and list(features.rfm_columns) == list(RFM_COLUMNS)


# --- preprocess and scale: finite numbers, one row per customer ---------------------------------


@FAST
@given(
    customer_tables(),
    st.sampled_from(["minmax", "standard", "robust"]),
    st.sampled_from(["median", "mean", "zero"]),
)
def test_only_finite_numbers_reach_the_clustering(case, scaler, impute):
    table, id_name, numbers, category = case
    table = table.rename(columns={id_name: "customer_id"})
    prepared = prepare_features(
        table, features_config(numbers, category), PreprocessConfig(scaler=scaler, impute=impute), []
    )
    assert list(prepared.customer_ids) == list(table["customer_id"])
    assert len(prepared.model_input) == len(table) == len(prepared.readable)
    assert np.isfinite(prepared.model_input.to_numpy(dtype=np.float64)).all()
    assume(prepared.model_input.shape[1] > 0)  # else the feasibility gate stops the run before scaling
    matrix = fit_scaling(prepared.model_input, scaler, prepared.categorical_columns)[1]
    assert matrix.shape == prepared.model_input.shape
    assert np.isfinite(matrix).all()


# --- clustering: a label per row, and assign reproduces the fit -----------------------------------

finite_matrices = st.integers(4, 60).flatmap(
    lambda rows: arrays(
        np.float64,
        (rows, 2),
        elements=st.one_of(
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), st.sampled_from([0.0, 1.0, 1e-300])
        ),
    )
)


@SLOW
@given(finite_matrices, st.sampled_from(["kmeans", "agglomerative", "birch", "kmedoids"]))
def test_every_row_gets_one_segment_and_assign_agrees_with_the_fit(matrix, algorithm):
    # identical rows: see test_identical_rows_share_a_segment
    assume(len(np.unique(matrix, axis=0)) == len(matrix))
    config = ClusteringConfig(algorithm=algorithm, k=(2, 3))
    try:
        segmentation = fit_segmentation(matrix, config)
    except SegflowError as error:  # e.g. identical rows: no k gives two segments
        assert "segments" in str(error) or "rows" in str(error)
        assume(False)
    labels = segmentation.labels
    assert labels.shape == (len(matrix),)
    assert set(labels.tolist()) == set(range(segmentation.n_segments))
    assert np.array_equal(assign_segments(segmentation, matrix), labels)


def test_identical_rows_share_a_segment():
    matrix = np.zeros((4, 2))
    segmentation = fit_segmentation(matrix, ClusteringConfig(algorithm="agglomerative", k=(2, 2)))
    assert len(set(segmentation.labels.tolist())) == 1
    assert np.array_equal(assign_segments(segmentation, matrix), segmentation.labels)


# --- publication: every customer exactly once, keys consistent ----------------------------------


def profiles_for(labels: np.ndarray) -> pd.DataFrame:
    readable = pd.DataFrame({"x": np.arange(len(labels), dtype=float)})
    return profile_segments(readable, labels, ["x"], [])


def publish(ids: list, labels: np.ndarray, stored: StoredState, as_of: date, id_type: pa.DataType):
    ledger = RunLedger(as_of=as_of, id_type=id_type)
    publication = build_publication(
        pd.Series(ids, dtype=object), labels, profiles_for(labels), stored, ledger
    )
    return {w.name: w.rows.to_pandas() for w in publication_writes(publication, ledger, RunFacts())}


@st.composite
def two_runs(draw):
    ids = draw(st.lists(unicode_ids, min_size=2, max_size=40, unique=True))
    first = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids), unique=True))
    second = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids), unique=True))
    label = st.integers(-1, 4)
    labels = [
        np.array(draw(st.lists(label, min_size=len(run), max_size=len(run)))) for run in (first, second)
    ]
    return first, labels[0], second, labels[1]


@FAST
@given(two_runs())
def test_every_customer_is_published_once_and_changes_are_exact(case):
    first_ids, first_labels, second_ids, second_labels = case
    day1, day2 = AS_OF, AS_OF + timedelta(days=1)
    first = publish(first_ids, first_labels, StoredState(), day1, pa.string())
    stored = StoredState(
        snapshot=first["customer_segments"], snapshot_as_of=day1, definitions=first["segment_definitions"]
    )
    second = publish(second_ids, second_labels, stored, day2, pa.string())
    for run_ids, tables in ((first_ids, first), (second_ids, second)):
        snapshot = tables["customer_segments"]
        assert sorted(snapshot["customer_id"]) == sorted(run_ids)  # each exactly once, nobody else
        assert (
            snapshot["segment_key"].notna().all() and snapshot["segment_key"].str.match(r"^seg-\d{4}$").all()
        )
        assert tables["segment_definitions"]["segment_key"].is_unique
    before = first["customer_segments"].set_index("customer_id")["segment_key"]
    after = second["customer_segments"].set_index("customer_id")["segment_key"]
    moved = {i for i in set(before.index) | set(after.index) if before.get(i) != after.get(i)}
    changes = second["segment_changes"]
    assert changes["customer_id"].is_unique and set(changes["customer_id"]) == moved
    # a label keeps one key within a run, and different labels get different keys
    pairs = pd.DataFrame({"label": second_labels, "key": after.reindex(second_ids).to_numpy()})
    assert (pairs.groupby("label")["key"].nunique() == 1).all()
    assert pairs.drop_duplicates()["key"].is_unique


# --- contract checks: accepted tables pass whole, broken ones are rejected by the rule ----------


def contract_for(id_name: str, number: str, category: str, minimum: float, allowed: list[str]) -> dict:
    return {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": "generated",
        "name": "generated",
        "version": "1.0.0",
        "status": "active",
        "schema": [
            {
                "name": "customers",
                "physicalType": "table",
                "properties": [
                    {"name": id_name, "logicalType": "string", "required": True, "unique": True},
                    {"name": number, "logicalType": "number", "logicalTypeOptions": {"minimum": minimum}},
                    {
                        "name": category,
                        "logicalType": "string",
                        "quality": [
                            {"metric": "invalidValues", "arguments": {"validValues": allowed}, "mustBe": 0}
                        ],
                    },
                ],
            }
        ],
    }


@st.composite
def contract_cases(draw):
    plain_names = column_names.filter(lambda n: n.strip() == n and n.isprintable())
    id_name, number, category = draw(st.lists(plain_names, min_size=3, max_size=3, unique_by=str.casefold))
    n_rows = draw(st.integers(1, 25))
    allowed = ["a", "b", "ç"]
    table = pd.DataFrame(
        {
            id_name: draw(st.lists(st.one_of(unicode_ids, st.none()), min_size=n_rows, max_size=n_rows)),
            number: draw(
                st.lists(st.one_of(st.floats(-1e9, 1e9), st.none()), min_size=n_rows, max_size=n_rows)
            ),
            category: draw(
                st.lists(st.sampled_from([*allowed, "A", "z", None]), min_size=n_rows, max_size=n_rows)
            ),
        }
    )
    return table, id_name, number, category, allowed


@SLOW
@given(contract_cases())
def test_a_table_breaking_a_critical_rule_is_rejected_by_that_rule(tmp_path_factory, case):
    table, id_name, number, category, allowed = case
    path = tmp_path_factory.mktemp("contract") / "generated.odcs.yaml"
    path.write_text(yaml.safe_dump(contract_for(id_name, number, category, 0.0, allowed)), encoding="utf-8")
    report = check_file(table, path, "customers")

    ids, numbers, values = table[id_name], table[number], table[category]
    expected = {
        f"{id_name} not null": int(ids.isna().sum()),
        f"{id_name} unique": int(ids.dropna().duplicated().sum()),
        f"{number} >= 0": int((numbers < 0).sum()),
        f"{category} in [{', '.join(allowed)}]": int((values.notna() & ~values.isin(allowed)).sum()),
    }
    failed = {o.rule for o in report.blocking}
    broken = {rule for rule, count in expected.items() if count}
    assert failed == broken
    for outcome in report.outcomes:
        if outcome.rule in expected and outcome.rule != f"{id_name} unique":
            assert outcome.unexpected_count == expected[outcome.rule], outcome.message
    for outcome in report.blocking:
        assert f"rule '{outcome.rule}'" in outcome.message and "customers" in outcome.message
    if not broken:
        assert len(report.passed_rows) == len(table) and report.quarantine.empty
    quarantined = set(report.quarantine["row_number"])
    assert len(report.passed_rows) + len(quarantined) == len(table)  # every row passed or quarantined
    assert not set(report.passed_rows.index) & quarantined


def test_a_contract_naming_columns_that_differ_only_in_case_is_refused(tmp_path):
    """Found by the property above: GX checked column 'P' for the rules of column 'p'."""
    path = tmp_path / "generated.odcs.yaml"
    path.write_text(yaml.safe_dump(contract_for("id", "P", "p", 0.0, ["a"])), encoding="utf-8")
    table = pd.DataFrame({"id": ["x"], "P": [0.0], "p": ["a"]})
    with pytest.raises(ConfigError, match="'P' and 'p' differ only in case"):
        check_file(table, path, "customers")


# --- the chain: a table the contract accepts yields one segment per customer --------------------


@SLOW
@given(customer_tables(min_rows=6, max_rows=60))
def test_an_accepted_table_yields_one_segment_per_customer(case):
    table, id_name, numbers, category = case
    config = build_config(
        {
            "sources": {"customers": {"uri": "c.parquet", "id_column": id_name}},
            "features": {"numeric": numbers, "categorical": [category]},
            "clustering": {"algorithm": "kmeans", "k": [2, 3]},
        }
    )
    features = build_customer_features({"customers": table}, config.sources, AS_OF)
    prepared = prepare_features(features.table, config.features, config.preprocess, features.rfm_columns)
    assume(prepared.model_input.shape[1] > 0)
    matrix = fit_scaling(prepared.model_input, "minmax", prepared.categorical_columns)[1]
    assert np.isfinite(matrix).all()
    try:
        segmentation = fit_segmentation(matrix, config.clustering)
    except SegflowError:
        assume(False)
    profiles = profile_segments(
        prepared.readable, segmentation.labels, prepared.numeric_columns, prepared.categorical_columns
    )
    id_type = pa.int64() if pd.api.types.is_integer_dtype(table[id_name]) else pa.string()
    tables = publish_prepared(prepared.customer_ids, segmentation.labels, profiles, id_type)
    snapshot = tables["customer_segments"]
    assert sorted(snapshot["customer_id"].tolist(), key=repr) == sorted(table[id_name].tolist(), key=repr)
    assert snapshot["customer_id"].is_unique and snapshot["segment_key"].notna().all()
    profile_rows = tables["segment_profiles"]
    assert profile_rows["size"].sum() == len(table)


def publish_prepared(ids: pd.Series, labels: np.ndarray, profiles: pd.DataFrame, id_type: pa.DataType):
    ledger = RunLedger(as_of=AS_OF, id_type=id_type)
    publication = build_publication(ids, labels, profiles, StoredState(), ledger)
    return {w.name: w.rows.to_pandas() for w in publication_writes(publication, ledger, RunFacts())}


@pytest.mark.parametrize("value", [1e308, -1e308])
def test_values_near_the_float_limit_overflow_neither_the_mean_nor_the_scalers(value):
    """Found by the properties above: the mean of two such values was infinite, and so was the
    standard scaler's variance, which turned the whole column into NaN."""
    table = pd.DataFrame({"customer_id": list("abcde"), "x": [value, value, None, 0.0, 1.0]})
    prepared = prepare_features(table, FeaturesConfig(numeric=["x"]), PreprocessConfig(impute="mean"), [])
    assert np.isfinite(prepared.model_input.to_numpy()).all()
    for scaler in ("minmax", "standard", "robust"):
        scaling, matrix = fit_scaling(prepared.model_input, scaler, [])
        assert np.isfinite(matrix).all() and matrix[0, 0] != matrix[3, 0], scaler
        assert np.array_equal(scaling.transform(prepared.model_input), matrix), scaler
