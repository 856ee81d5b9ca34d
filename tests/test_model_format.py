"""The saved model is signed data (a JSON manifest and numeric arrays), never a pickle: every
algorithm scores the same after saving and loading, and forged or altered models are refused
without anything in them being run."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shlex
import zipfile
from datetime import date
from functools import cache

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans

from segflow.clustering import ALGORITHMS, fit_segmentation
from segflow.config import ClusteringConfig, FeaturesConfig, PreprocessConfig
from segflow.errors import ConfigError
from segflow.rfm import CELL_NAMES, rfm_positions
from segflow.saved_model import MAGIC, model_key, pack, unpack
from segflow.tasks.preprocess import prepare_features
from segflow.tasks.scale import fit_scaling
from segflow.tasks.score import ScoringModel, model_blob, model_from_blob, model_from_record, score_customers

KEY = b"a-model-key-for-these-tests-0123456789"
OTHER_KEY = b"another-model-key-nobody-uses-0123456789"
SCALERS = ("minmax", "standard", "robust")
TARGET = "DuckDB w.duckdb (schema segments)"


def customers(n: int, seed: int, first_id: int = 0) -> pd.DataFrame:
    """Three kinds of customer in skewed, missing and categorical columns."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    age = (np.array([25.0, 45.0, 65.0])[kind] + rng.normal(0, 4, n)).round()
    age[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "customer_id": np.arange(n) + first_id,
            "spend": np.array([40.0, 400.0, 4000.0])[kind] * rng.lognormal(0, 0.3, n),
            "visits": rng.poisson(np.array([2, 10, 30])[kind]),
            "age": age,
            "channel": np.array(["web", "store", "phone"])[kind],
        }
    )


@cache
def fitted(algorithm: str, scaler: str) -> ScoringModel:
    """A model fitted on 900 customers; the algorithms without a refit keep a 500-row sample fit."""
    prepared = prepare_features(
        customers(900, seed=1),
        FeaturesConfig(numeric=["spend", "visits", "age"], categorical=["channel"]),
        PreprocessConfig(scaler=scaler),
        [],
    )
    scaling, matrix = fit_scaling(prepared.model_input, scaler, ["channel"])
    config = ClusteringConfig(algorithm=algorithm, k=(3, 4), fit_sample_size=500, sample_size=600)
    segmentation = fit_segmentation(matrix, config)
    keys = {label: f"seg-{label + 1:04d}" for label in range(segmentation.n_segments)}
    return ScoringModel(
        run_id=f"run-{algorithm}",
        as_of=date(2026, 11, 1),
        algorithm=algorithm,
        rfm=False,
        never_bought_days=None,
        preparation=prepared.preparation,
        scaling=scaling,
        assigner=segmentation.assigner,
        segment_keys=keys,
    )


def record_of(blob: bytes, run_id: str = "run-kmeans", as_of: date = date(2026, 11, 1)) -> dict:
    """A `segment_models` row as a store reads it."""
    return {"run_id": run_id, "as_of": as_of, "model": blob, "model_sha256": hashlib.sha256(blob).hexdigest()}


# ---------------------------------------------------------------------------- the same scores


CLUSTERINGS = [name for name, entry in ALGORITHMS.items() if entry.family != "map"]  # the map: below


@pytest.mark.parametrize("algorithm", CLUSTERINGS)
def test_every_algorithm_scores_the_same_after_saving_and_loading(algorithm):
    model = fitted(algorithm, SCALERS[CLUSTERINGS.index(algorithm) % len(SCALERS)])
    loaded = model_from_blob(model_blob(model, KEY), KEY)

    new = pd.concat([customers(400, seed=2, first_id=10_000), customers(900, seed=1).iloc[::7]])
    new.loc[new.index[:20], "spend"] *= 50  # far from every segment: noise for the density methods
    expected = score_customers(model, new)
    assert expected["segment_key"].nunique() >= 2
    pd.testing.assert_frame_equal(score_customers(loaded, new), expected)

    matrix = model.scaling.transform(model.preparation.model_input(new))
    assert np.array_equal(loaded.scaling.transform(loaded.preparation.model_input(new)), matrix)
    assert np.array_equal(loaded.assigner.assign(matrix), model.assigner.assign(matrix))
    assert type(loaded.assigner.rule) is type(model.assigner.rule)
    assert (loaded.run_id, loaded.as_of) == (model.run_id, model.as_of)
    assert loaded.segment_keys == model.segment_keys
    if algorithm == "kmeans":  # the saved rule is what k-means' own predict does with its centres
        centres = loaded.assigner.rule.centres
        reference = KMeans(n_clusters=len(centres), n_init=1).fit(centres)
        reference.cluster_centers_ = centres.copy()
        assert np.array_equal(reference.predict(matrix), loaded.assigner.rule(matrix))


def buyers(n: int, seed: int, first_id: int = 0) -> pd.DataFrame:
    """Customers with the RFM features (most bought once), a skewed spend and a category."""
    rng = np.random.default_rng(seed)
    frequency = np.where(rng.random(n) < 0.6, 1, rng.geometric(0.3, n) + 1)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n) + first_id,
            "recency_days": rng.geometric(0.005, n),
            "frequency": frequency,
            "monetary": np.round(frequency * rng.lognormal(3.5, 0.8, n), 2),
            "tenure_days": rng.integers(0, 1500, n),
            "avg_order_value": rng.lognormal(3.5, 0.8, n),
            "channel": rng.choice(["web", "store"], n),
        }
    )


@pytest.mark.parametrize("scaler", SCALERS)
def test_the_rfm_map_scores_the_same_after_saving_and_loading(scaler):
    """Its rule is plain arrays: the measures' columns, their quintile edges and the 5x5x5 lookup."""
    rfm = ["recency_days", "frequency", "monetary", "tenure_days", "avg_order_value"]
    prepared = prepare_features(
        buyers(2000, seed=1), FeaturesConfig(categorical=["channel"]), PreprocessConfig(scaler=scaler), rfm
    )
    scaling, matrix = fit_scaling(prepared.model_input, scaler, ["channel"])
    positions = rfm_positions(scaling.columns, rfm)
    segmentation = fit_segmentation(matrix, ClusteringConfig(algorithm="rfm", fit_sample_size=500), positions)
    keys = {label: f"seg-{label + 1:04d}" for label in range(segmentation.n_segments)}
    model = ScoringModel(
        "run-rfm",
        date(2026, 11, 1),
        "rfm",
        True,
        None,
        prepared.preparation,
        scaling,
        segmentation.assigner,
        keys,
    )
    manifest, arrays = unpack(model_blob(model, KEY), KEY)
    assert manifest["assigner"]["rule"] == "rfm_map" and not manifest["assigner"]["memory"]
    assert {name for name in arrays if name.startswith("assigner.rule.")} == {
        "assigner.rule.positions",
        "assigner.rule.edges",
        "assigner.rule.lookup",
    }
    assert arrays["assigner.rule.lookup"].shape == (5, 5, 5)
    loaded = model_from_blob(model_blob(model, KEY), KEY)

    new = buyers(700, seed=2, first_id=10_000)
    expected = score_customers(model, new)
    assert expected["segment_key"].nunique() >= 5
    pd.testing.assert_frame_equal(score_customers(loaded, new), expected)
    # each new customer is in the segment of its map cell under the fitted edges
    cells = segmentation.rfm(scaling.transform(prepared.preparation.model_input(new)))
    named = {keys[label]: name for label, name in segmentation.names.items()}
    assert [named.get(key) for key in expected["segment_key"]] == [
        CELL_NAMES[cell] if CELL_NAMES[cell] in named.values() else None for cell in cells
    ]


@pytest.mark.parametrize("scaler", SCALERS)
def test_every_scaler_transforms_the_same_after_saving_and_loading_even_huge_values(scaler):
    frame = pd.DataFrame({"a": np.linspace(-3e200, 5e200, 50), "b": np.random.default_rng(0).normal(size=50)})
    scaling, _ = fit_scaling(frame, scaler, [])
    assert scaling.magnitudes is not None
    settings, arrays = scaling.saved()
    manifest, loaded_arrays = unpack(pack({"scaling": settings}, arrays, KEY), KEY)
    restored = type(scaling).from_saved(manifest["scaling"], loaded_arrays)
    assert type(restored.scaler) is type(scaling.scaler)
    assert np.array_equal(restored.transform(frame), scaling.transform(frame))


# ---------------------------------------------------------------------------- forged models


class RunsCode:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def archive(manifest: dict, members: dict[str, bytes]) -> bytes:
    """A zip of the given members and manifest, as a forger would write it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("manifest.json", json.dumps(manifest))
        for name, content in members.items():
            zipped.writestr(name, content)
    return buffer.getvalue()


def signed(payload: bytes, key: bytes) -> bytes:
    import hmac

    return MAGIC + hmac.digest(key, MAGIC + payload, "sha256") + payload


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def test_a_pickled_model_row_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    blob = pickle.dumps(RunsCode(marker))
    with pytest.raises(ConfigError, match=r"run run-forged in table segment_models.*pickle") as refused:
        model_from_record(record_of(blob, run_id="run-forged"), TARGET, KEY)
    assert refused.value.exit_code == 2 and "run `segflow run` again" in str(refused.value)
    assert not marker.exists()
    pickle.loads(blob)  # the forged row is live: loading it the old way runs its command
    assert marker.exists()


@pytest.mark.parametrize("change", ["other key", "changed byte", "forged archive"])
def test_a_model_whose_signature_does_not_verify_is_refused_before_it_is_read(change, tmp_path):
    marker = tmp_path / "ran"
    genuine = model_blob(fitted("kmeans", "minmax"), KEY)
    if change == "other key":
        blob, key = genuine, OTHER_KEY
    elif change == "changed byte":
        blob, key = genuine[:-40] + bytes([genuine[-40] ^ 1]) + genuine[-39:], KEY
    else:
        payload = archive(
            {"format_version": 1, "arrays": {"x": {"dtype": "|O", "shape": [1]}}},
            {"x.npy": npy(np.array([RunsCode(marker)], dtype=object))},
        )
        blob, key = signed(payload, OTHER_KEY), KEY
    with pytest.raises(ConfigError, match=r"run run-kmeans in table segment_models.*does not verify"):
        model_from_record(record_of(blob), TARGET, key)
    assert not marker.exists()


@pytest.mark.parametrize("listed_as", ["|O", "<f8"])
def test_an_object_array_is_refused_even_when_signed_with_the_key(listed_as, tmp_path):
    """The signature is not the only guard: arrays are numbers only and never unpickled."""
    marker = tmp_path / "ran"
    payload = archive(
        {"format_version": 1, "arrays": {"x": {"dtype": listed_as, "shape": [1]}}},
        {"x.npy": npy(np.array([RunsCode(marker)], dtype=object))},
    )
    with pytest.raises(ConfigError, match=r"numbers only|cannot be read") as refused:
        model_from_record(record_of(signed(payload, KEY)), TARGET, KEY)
    assert refused.value.exit_code == 2
    assert not marker.exists()


@pytest.mark.parametrize(
    ("listed", "reason"),
    [
        ({}, "differ from those its manifest lists"),
        ({"x": {"dtype": "<f8", "shape": [3]}}, r"array 'x' is <f8 \[4\], the manifest says <f8 \[3\]"),
        ({"x": {"dtype": "<i8", "shape": [4]}}, r"array 'x' is <f8 \[4\], the manifest says <i8 \[4\]"),
    ],
)
def test_arrays_that_differ_from_the_manifest_are_refused(listed, reason):
    payload = archive({"format_version": 1, "arrays": listed}, {"x.npy": npy(np.ones(4))})
    with pytest.raises(ConfigError, match=reason):
        model_from_record(record_of(signed(payload, KEY)), TARGET, KEY)


def test_a_genuine_model_copied_into_another_runs_row_is_refused():
    blob = model_blob(fitted("kmeans", "minmax"), KEY)
    assert model_from_record(record_of(blob), TARGET, KEY).run_id == "run-kmeans"
    with pytest.raises(
        ConfigError, match="model of run run-kmeans as of 2026-11-01, copied into another row"
    ):
        model_from_record(record_of(blob, run_id="run-later", as_of=date(2026, 12, 1)), TARGET, KEY)


@pytest.mark.usefixtures("prefect_harness")
def test_scoring_refuses_a_forged_pickle_row_in_the_warehouse_and_runs_nothing(tmp_path):
    """The reproduction of issue 16: a row with a later as_of and its own sha256 is the one loaded."""
    from segflow.flows.scoring import scoring_flow
    from segflow.flows.segmentation import segmentation_flow
    from tests.test_scoring import AS_OF, NEXT_DAY, buyers, config_for

    history = tmp_path / "orders.parquet"
    buyers(np.arange(600) + 1, seed=4).to_parquet(history)
    warehouse = tmp_path / "w.duckdb"
    config = config_for(history, f"duckdb:///{warehouse}")
    segmentation_flow(config=config, as_of=AS_OF)

    marker = tmp_path / "ran"
    blob = pickle.dumps(RunsCode(marker))
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(
            "INSERT INTO segments.segment_models VALUES ('forged', DATE '2026-11-05', now(), 'kmeans', "
            "'[]', '{}', ?, ?)",
            [blob, hashlib.sha256(blob).hexdigest()],
        )
        before = connection.sql("SELECT * FROM segments.customer_segments ORDER BY customer_id").df()
    with pytest.raises(ConfigError, match="run forged in table segment_models.*pickle") as refused:
        scoring_flow(config=config, as_of=NEXT_DAY)
    assert refused.value.exit_code == 2
    assert not marker.exists()
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        after = connection.sql("SELECT * FROM segments.customer_segments ORDER BY customer_id").df()
    pd.testing.assert_frame_equal(before, after)


# ---------------------------------------------------------------------------- the key


def test_without_a_configured_key_one_is_generated_once_for_this_user_only(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGFLOW_MODEL_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    first = model_key(None)
    path = tmp_path / ".segflow" / "model.key"
    assert first.created and first.source == str(path) and len(first.key) == 64
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    again = model_key(None)
    assert again.key == first.key and not again.created
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="can be read or written by other users"):
        model_key(None)


def test_the_key_comes_from_the_environment_and_must_be_long_enough(monkeypatch):
    monkeypatch.setenv("SEGFLOW_MODEL_KEY", "x" * 40)
    assert model_key(None).key == b"x" * 40 and model_key(None).source == "$SEGFLOW_MODEL_KEY"
    monkeypatch.setenv("SEGFLOW_MODEL_KEY", "short")
    with pytest.raises(ConfigError, match="5 characters; use at least 32"):
        model_key(None)


@pytest.mark.usefixtures("prefect_harness")
def test_a_secret_block_named_in_config_is_the_key(monkeypatch):
    from prefect.blocks.system import Secret

    Secret(value="s" * 48).save("segflow-test-model-key", overwrite=True)
    monkeypatch.setenv("SEGFLOW_MODEL_KEY", "x" * 40)  # the block named in config wins
    assert model_key("segflow-test-model-key").key == b"s" * 48
    with pytest.raises(ConfigError, match="cannot load the Prefect Secret block 'no-such-block'"):
        model_key("no-such-block")
