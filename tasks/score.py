"""Score: assign new or changed customers to the published segments with the saved model.

A publishing run saves its model (the preparation, the scaling, the clustering's assignment rule
and the label -> segment key map) in `segment_models`, versioned by its run. Scoring prepares new
customers with that model and assigns them without refitting.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.clustering import SegmentAssigner, Segmentation
from segflow.errors import ConfigError, ContractViolation
from segflow.retry import IO_RETRY_POLICY
from segflow.stores import PublicationStore, TableWrite
from segflow.tables import CUSTOMER_ID, NOISE_SEGMENT_KEY, TABLES
from segflow.tasks.features import CustomerFeatures
from segflow.tasks.preprocess import Preparation, PreparedFeatures, drop_duplicate_customers
from segflow.tasks.scale import FittedScaling


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
    features: CustomerFeatures,
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


def model_write(model: ScoringModel) -> TableWrite:
    """The model as its `segment_models` row. The checksum guards against corruption only: the
    model is a pickle and must come from a warehouse that only segflow's publisher can write."""
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
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


def model_from_record(record: dict[str, Any] | None, target: str) -> ScoringModel:
    """The saved model of the current publication, or a clear refusal."""
    if record is None:
        raise ConfigError(
            f"no segmentation model is published in {target} yet: run `segflow run` first, "
            "then score new customers against its segments"
        )
    blob = bytes(record["model"])
    if hashlib.sha256(blob).hexdigest() != record["model_sha256"]:
        raise ConfigError(f"the model of run {record['run_id']} in {target} is corrupt (checksum mismatch)")
    return pickle.loads(blob)


def score_customers(model: ScoringModel, customers: pd.DataFrame) -> pd.DataFrame:
    """Each customer's segment key under the model (customer_id, segment_key), one row per id."""
    missing = [column for column in model.input_columns if column not in customers.columns]
    if missing:
        raise ContractViolation(
            f"the customers to score do not match the model of run {model.run_id}: column(s) "
            f"{', '.join(map(repr, missing))} are missing (the model reads {', '.join(model.input_columns)})"
        )
    customers, _ = drop_duplicate_customers(customers)
    matrix = model.scaling.transform(model.preparation.model_input(customers))
    labels = model.assigner.assign(matrix)
    keys = np.array([model.segment_keys.get(int(label), NOISE_SEGMENT_KEY) for label in labels], dtype=object)
    return pd.DataFrame({CUSTOMER_ID: customers[CUSTOMER_ID].to_numpy(), "segment_key": keys})


@task(name="load-model", cache_policy=NO_CACHE, **IO_RETRY_POLICY)
def load_model_task(store: PublicationStore) -> ScoringModel:
    model = model_from_record(store.read_model(), store.describe())
    get_run_logger().info(
        "load-model: %s model of run %s (as of %s), %d input columns",
        model.algorithm,
        model.run_id,
        model.as_of,
        len(model.input_columns),
    )
    return model


@task(name="score", cache_policy=NO_CACHE)
def score_task(model: ScoringModel, customers: pd.DataFrame) -> pd.DataFrame:
    scored = score_customers(model, customers)
    get_run_logger().info(
        "score: %d customers assigned with the model of run %s; by segment %s",
        len(scored),
        model.run_id,
        scored["segment_key"].value_counts().sort_index().to_dict(),
    )
    return scored
