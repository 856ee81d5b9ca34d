"""Helpers shared by the tests: contracts checked from their files."""

from __future__ import annotations

from pathlib import Path

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
