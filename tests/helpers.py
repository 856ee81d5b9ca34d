"""Helpers shared by the tests: contracts checked from their files, customers in clear groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from segflow.config import SourcesConfig
from segflow.contracts.check import QualityReport, SourcesCheck, check_sources, check_table
from segflow.contracts.odcs import compile_source_contracts, contract_for


def check_file(table: pd.DataFrame, contract_path: str | Path, source: str) -> QualityReport:
    """Check a table against the contract of a file, as the quality stage does."""
    return check_table(table, contract_for(contract_path, source), source)


def check_configured(sources: dict[str, pd.DataFrame], config: SourcesConfig) -> SourcesCheck:
    """Check sources against the contracts their config names, as the quality stage does."""
    return check_sources(sources, compile_source_contracts(config), config)


def three_groups(
    n: int, seed: int = 0, id_column: str = "account", id_prefix: str | None = None, changed: int = 0
) -> pd.DataFrame:
    """Customers in three clear groups of visits and spend, the i-th in group i % 3 (ids from 1, or
    text ids with a prefix); `changed` of them, drawn by the seed, put in a random group instead."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % 3
    group[rng.choice(n, size=changed, replace=False)] = rng.integers(0, 3, size=changed)
    ids = np.arange(n) + 1
    return pd.DataFrame(
        {
            id_column: ids if id_prefix is None else [f"{id_prefix}{i:05d}" for i in ids],
            "visits": np.array([1.0, 10.0, 20.0])[group] + rng.normal(0, 0.5, n),
            "spend": np.array([5.0, 50.0, 10.0])[group] + rng.normal(0, 0.5, n),
        }
    )
