"""Score: assign new or changed customers to the published segments with the saved model.

A publishing run saves its model (the preparation, the scaling, the clustering's assignment rule
and the label -> segment key map) in `segment_models`, versioned by its run, in segflow's signed
model format (a JSON manifest and numeric arrays, see `segflow.saved_model`): nothing in a saved
model is unpickled or run. Scoring verifies the model's signature, prepares new customers with it
and assigns them without refitting.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.clustering import SegmentAssigner, Segmentation
from segflow.config import PublishConfig
from segflow.errors import ConfigError, ContractViolation
from segflow.retry import IO_RETRY_POLICY
from segflow.saved_model import UnreadableModel, model_key, pack, unpack, with_prefix, without_prefix
from segflow.stores import PublicationStore, TableWrite
from segflow.tables import CUSTOMER_ID, NOISE_SEGMENT_KEY, TABLES
from segflow.tasks.features import FitFeatures
from segflow.tasks.preprocess import Preparation, PreparedFeatures
from segflow.tasks.scale import FittedScaling
from segflow.timing import timed


@dataclass
class ScoringModel:
    """Everything needed to segment new customers the way the fitted run did."""

    run_id: str
    as_of: date
    algorithm: str
    rfm: bool
    never_bought_days: int | None
    preparation: Preparation
    scaling: FittedScaling
    assigner: SegmentAssigner
    segment_keys: dict[int, str]  # the clustering's labels -> published segment keys

    def never_bought_days_on(self, as_of: date) -> int | None:
        """The recency and tenure of a customer who never bought, as of a later date."""
        return None if self.never_bought_days is None else self.never_bought_days + (as_of - self.as_of).days

    @property
    def input_columns(self) -> list[str]:
        """The customer-table columns the model reads."""
        return [*self.preparation.numeric_columns, *self.preparation.categories]


def fitted_model(
    run_id: str,
    as_of: date,
    features: FitFeatures,
    prepared: PreparedFeatures,
    scaling: FittedScaling,
    segmentation: Segmentation,
    segment_keys: dict[int, str],
) -> ScoringModel:
    """The model a publishing run saves next to its segments."""
    return ScoringModel(
        run_id=run_id,
        as_of=as_of,
        algorithm=segmentation.algorithm,
        rfm=bool(features.rfm_columns),
        never_bought_days=features.never_bought_days,
        preparation=prepared.preparation,
        scaling=scaling,
        assigner=segmentation.assigner,
        segment_keys=dict(segment_keys),
    )


def model_blob(model: ScoringModel, key: bytes) -> bytes:
    """The model as a signed blob: its settings in the manifest, its numbers as arrays."""
    scaling_settings, scaling_arrays = model.scaling.saved()
    assigner_settings, assigner_arrays = model.assigner.saved()
    manifest = {
        "run_id": model.run_id,
        "as_of": model.as_of.isoformat(),
        "algorithm": model.algorithm,
        "rfm": model.rfm,
        "never_bought_days": None if model.never_bought_days is None else int(model.never_bought_days),
        "preparation": asdict(model.preparation),
        "scaling": scaling_settings,
        "assigner": assigner_settings,
        "segment_keys": {str(label): key for label, key in model.segment_keys.items()},
    }
    arrays = {**with_prefix("scaling.", scaling_arrays), **with_prefix("assigner.", assigner_arrays)}
    return pack(manifest, arrays, key)


def model_from_blob(blob: bytes, key: bytes) -> ScoringModel:
    """The model of a signed blob, or UnreadableModel saying why it is refused."""
    manifest, arrays = unpack(blob, key)
    try:
        return ScoringModel(
            run_id=str(manifest["run_id"]),
            as_of=date.fromisoformat(manifest["as_of"]),
            algorithm=str(manifest["algorithm"]),
            rfm=bool(manifest["rfm"]),
            never_bought_days=manifest["never_bought_days"],
            preparation=Preparation(**manifest["preparation"]),
            scaling=FittedScaling.from_saved(manifest["scaling"], without_prefix("scaling.", arrays)),
            assigner=SegmentAssigner.from_saved(manifest["assigner"], without_prefix("assigner.", arrays)),
            segment_keys={int(label): str(key) for label, key in manifest["segment_keys"].items()},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise UnreadableModel(
            f"its manifest does not describe a model this segflow reads ({type(error).__name__}: {error})"
        ) from error


def signing_key(publish: PublishConfig) -> bytes:
    """The key that signs and verifies saved models; says where it came from, never what it is."""
    key = model_key(publish.model_key_secret)
    if key.created:
        get_run_logger().warning(
            "no model key was configured: generated one in %s (readable by this user only). Scoring "
            "as another user or on another machine needs the same key: set SEGFLOW_MODEL_KEY or "
            "publish.model_key_secret (a Prefect Secret block)",
            key.source,
        )
    else:
        get_run_logger().info("saved models are signed and verified with the model key from %s", key.source)
    return key.key


def model_write(model: ScoringModel, publish: PublishConfig) -> TableWrite:
    """The model as its `segment_models` row, signed with the model key. The sha256 identifies the
    blob; the HMAC inside it is what proves segflow wrote it."""
    blob = model_blob(model, signing_key(publish))
    row = {
        "run_id": [model.run_id],
        "as_of": [model.as_of],
        "created_at": [datetime.now()],
        "algorithm": [model.algorithm],
        "model_columns": [json.dumps(model.input_columns)],
        "segment_keys": [json.dumps({str(label): key for label, key in model.segment_keys.items()})],
        "model": [blob],
        "model_sha256": [hashlib.sha256(blob).hexdigest()],
    }
    table = pa.table(row, schema=TABLES["segment_models"].arrow_schema(pa.string()))
    return TableWrite("segment_models", table, "as_of")


def model_from_record(record: dict[str, Any] | None, target: str, key: bytes) -> ScoringModel:
    """The saved model of the current publication, or a clear refusal (exit 2) that names it."""
    if record is None:
        raise ConfigError(
            f"no segmentation model is published in {target} yet: run `segflow run` first, "
            "then score new customers against its segments"
        )
    where = f"the model of run {record['run_id']} in table segment_models of {target}"
    rerun = "run `segflow run` again to publish a model this machine can verify, then score"
    try:
        model = model_from_blob(bytes(record["model"]), key)
    except UnreadableModel as error:
        raise ConfigError(f"{where} is refused: {error}; {rerun}") from error
    as_of = pd.Timestamp(record["as_of"]).date()
    if (model.run_id, model.as_of) != (record["run_id"], as_of):
        raise ConfigError(
            f"{where} (as of {as_of}) is refused: its signed contents are the model of run "
            f"{model.run_id} as of {model.as_of}, copied into another row; {rerun}"
        )
    return model


def score_customers(model: ScoringModel, customers: pd.DataFrame) -> pd.DataFrame:
    """Each customer's segment key under the model (customer_id, segment_key), one row per id in."""
    missing = [column for column in model.input_columns if column not in customers.columns]
    if missing:
        raise ContractViolation(
            f"the customers to score do not match the model of run {model.run_id}: column(s) "
            f"{', '.join(map(repr, missing))} are missing (the model reads {', '.join(model.input_columns)})"
        )
    matrix = model.scaling.transform(model.preparation.model_input(customers))
    labels = model.assigner.assign(matrix)
    keys = np.array([model.segment_keys.get(int(label), NOISE_SEGMENT_KEY) for label in labels], dtype=object)
    return pd.DataFrame({CUSTOMER_ID: customers[CUSTOMER_ID].to_numpy(), "segment_key": keys})


@task(name="load-model", cache_policy=NO_CACHE, **IO_RETRY_POLICY)
@timed
def load_model_task(store: PublicationStore, publish: PublishConfig) -> ScoringModel:
    model = model_from_record(store.read_model(), store.describe(), signing_key(publish))
    get_run_logger().info(
        "load-model: %s model of run %s (as of %s), %d input columns",
        model.algorithm,
        model.run_id,
        model.as_of,
        len(model.input_columns),
    )
    return model


@task(name="score", cache_policy=NO_CACHE)
@timed
def score_task(model: ScoringModel, customers: pd.DataFrame) -> pd.DataFrame:
    scored = score_customers(model, customers)
    get_run_logger().info(
        "score: %d customers assigned with the model of run %s; by segment %s",
        len(scored),
        model.run_id,
        scored["segment_key"].value_counts().sort_index().to_dict(),
    )
    return scored
