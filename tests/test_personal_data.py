"""Personal data: columns a contract marks `personalData: true` never reach logs, Prefect
artifacts or the API database, the report, the validation files or any published table. The
quarantine keeps a failing row's id and row number, with its personal values withheld; the
stages after the contract check never see personal columns, so profiles and reports hold
aggregates of the features only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from segflow.config import build_config
from segflow.errors import ConfigError
from segflow.flows.segmentation import segmentation_flow
from segflow.quarantine import PERSONAL_DATA_WITHHELD
from tests.helpers import check_configured, check_file
from tests.test_flow import unseen_transactions

AS_OF = date(2026, 11, 1)
TOKEN = uuid.uuid4().hex[:12]
N_CUSTOMERS = 1200
BAD_MAILS = range(0, 40, 2)  # 20 addresses without '@': the mail rule quarantines them
FOREIGN = range(1, 31, 2)  # 15 customers of a market the contract does not serve


def planted_mail(i: int) -> str:
    return f"planted.pii.{TOKEN}.{i}" + ("-at-example.invalid" if i in BAD_MAILS else "@example.invalid")


def planted_name(i: int) -> str:
    return f"Planted{TOKEN} Person{i}"


def planted_phone(i: int) -> int:
    return 4_915_100_000_000 + 7_919 * i


def prop(name: str, logical_type: str, personal: bool = False, **rules) -> dict:
    described = {"name": name, "logicalType": logical_type, "physicalType": "VARCHAR", **rules}
    if personal:
        described["customProperties"] = [{"property": "personalData", "value": True}]
    return described


CONTRACT = {
    "apiVersion": "v3.1.0",
    "kind": "DataContract",
    "id": "pii-kunden",
    "name": "kunden",
    "version": "2.0.0",
    "status": "active",
    "schema": [
        {
            "name": "customers",
            "physicalName": "kunden",
            "physicalType": "table",
            "properties": [
                prop("kunde", "integer", required=True, unique=True, primaryKey=True),
                prop(
                    "mail",
                    "string",
                    personal=True,
                    quality=[
                        {
                            "metric": "invalidValues",
                            "arguments": {"pattern": "^[^@ ]+@[^@ ]+$"},
                            "mustBe": 0,
                            "severity": "warning",
                        }
                    ],
                ),
                prop("voller_name", "string", personal=True),
                prop("telefon", "integer", personal=True),
                prop(
                    "land",
                    "string",
                    quality=[
                        {
                            "metric": "invalidValues",
                            "arguments": {"validValues": ["DE", "AT", "CH"]},
                            "mustBe": 0,
                            "severity": "warning",
                        }
                    ],
                ),
                prop("besuche", "integer", logicalTypeOptions={"minimum": 0}),
            ],
        }
    ],
}


def planted_customers() -> pd.DataFrame:
    ids = np.sort(unseen_transactions()["KundenNr"].unique())
    rng = np.random.default_rng(3)
    customers = pd.DataFrame(
        {
            "kunde": ids,
            "mail": [planted_mail(i) for i in range(len(ids))],
            "voller_name": [planted_name(i) for i in range(len(ids))],
            "telefon": [planted_phone(i) for i in range(len(ids))],
            "land": rng.choice(["DE", "AT", "CH"], len(ids)),
            "besuche": rng.integers(0, 40, len(ids)),
        }
    )
    customers.loc[list(FOREIGN), "land"] = "XX"
    return customers


def leaks(text: str) -> list[str]:
    """The planted personal values found in a text."""
    found = re.findall(rf"(?i)planted\.pii\.{TOKEN}[^\"',\s]*|planted{TOKEN} person\d+", text)
    phones = {str(planted_phone(i)) for i in range(N_CUSTOMERS)}
    found += [number for number in re.findall(r"49151\d{8}", text) if number in phones]
    return found


def write_inputs(folder: Path) -> tuple[Path, Path, Path]:
    customers, transactions, contract = (
        folder / "kunden.parquet",
        folder / "zahlungen.parquet",
        folder / "kunden.odcs.yaml",
    )
    planted_customers().to_parquet(customers)
    unseen_transactions().to_parquet(transactions)
    contract.write_text(yaml.safe_dump(CONTRACT, sort_keys=False), encoding="utf-8")
    return customers, transactions, contract


def pii_config(inputs: Path, out: Path, **features):
    customers, transactions, contract = write_inputs(inputs)
    return build_config(
        {
            "sources": {
                "customers": {"uri": str(customers), "contract": str(contract), "id_column": "kunde"},
                "transactions": {
                    "uri": str(transactions),
                    "id_column": "KundenNr",
                    "timestamp_column": "Zahlungszeit",
                    "amount_column": "Betrag",
                },
            },
            "features": {"categorical": ["land"], **features},
            "clustering": {"algorithm": "kmeans", "k": [2, 5]},
            "publish": {
                "warehouse": f"duckdb:///{out / 'warehouse.duckdb'}",
                "parquet": str(out / "parquet"),
                "reports": str(out / "reports"),
            },
        }
    )


# --- the contract stage: masking and withholding ----------------------------------------------


def test_quarantined_rows_keep_their_id_and_withhold_personal_values(tmp_path):
    _, _, contract = write_inputs(tmp_path)
    report = check_file(planted_customers(), contract, "customers")
    quarantine = report.quarantine
    assert dict(quarantine["rule"].value_counts()) == {
        "mail matches ^[^@ ]+@[^@ ]+$": len(BAD_MAILS),
        "land in [DE, AT, CH]": len(FOREIGN),
    }
    records = [json.loads(record) for record in quarantine["record"]]
    assert all(
        record["mail"] == record["voller_name"] == record["telefon"] == PERSONAL_DATA_WITHHELD
        for record in records
    )
    assert {int(record["kunde"]) for record in records} == set(
        planted_customers().loc[list(BAD_MAILS) + list(FOREIGN), "kunde"]
    )
    assert not leaks(quarantine.to_json())


def test_personal_columns_are_not_passed_on_unless_the_config_needs_them(tmp_path):
    customers, _, contract = write_inputs(tmp_path)
    config = build_config(
        {"sources": {"customers": {"uri": str(customers), "contract": str(contract), "id_column": "kunde"}}}
    )
    checked = check_configured({"customers": planted_customers()}, config.sources)
    assert list(checked.passed["customers"].columns) == ["kunde", "land", "besuche"]
    assert checked.withheld == {"customers": ["mail", "voller_name", "telefon"]}

    # a personal column that is the customer id is kept: the id is published by design
    config.sources.customers.id_column = "mail"
    checked = check_configured({"customers": planted_customers()}, config.sources)
    assert "mail" in checked.passed["customers"].columns
    assert checked.withheld == {"customers": ["voller_name", "telefon"]}


@pytest.mark.usefixtures("prefect_harness")
def test_a_personal_column_named_as_a_feature_is_refused(tmp_path):
    config = pii_config(tmp_path, tmp_path / "out", categorical=["land", "mail"])
    with pytest.raises(ConfigError, match="'mail' not found.*personal data") as raised:
        segmentation_flow(config=config, as_of=AS_OF)
    assert not leaks(str(raised.value))


# --- the whole flow: every output searched ---------------------------------------------------


async def prefect_records(flow_run_id) -> dict[str, str]:
    """What the Prefect API holds about a flow run: logs, artifacts, task and flow runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        artifacts = await client.read_artifacts(flow_run_filter=runs)
        task_runs = await client.read_task_runs(flow_run_filter=runs)
        flow_run = await client.read_flow_run(flow_run_id)
    return {
        "logs": "\n".join(log.message for log in logs),
        "artifacts": "\n".join(artifact.model_dump_json() for artifact in artifacts),
        "task runs": "\n".join(task_run.model_dump_json() for task_run in task_runs),
        "flow run": flow_run.model_dump_json(),
    }


def prefect_database_bytes() -> bytes:
    """The harness's SQLite database (and its write-ahead log), as stored."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url.get_secret_value()
    database = Path(urlsplit(url.replace("sqlite+aiosqlite:///", "file:///")).path)
    return b"".join(
        path.read_bytes() for path in (database, database.with_name(database.name + "-wal")) if path.exists()
    )


def published_tables(out: Path) -> dict[str, str]:
    """Every table in the DuckDB warehouse and every Parquet file, as text."""
    texts = {}
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as connection:
        names = connection.sql("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        for schema, table in names:
            texts[f"duckdb {schema}.{table}"] = repr(
                connection.sql(f'SELECT * FROM "{schema}"."{table}"').fetchall()
            )
    for path in (out / "parquet").rglob("*.parquet"):
        texts[str(path)] = repr(pq.read_table(path).to_pylist())
    return texts


@pytest.mark.usefixtures("prefect_harness")
def test_planted_personal_values_appear_in_no_output_of_a_run(tmp_path, caplog):
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import get_current_settings

    out = tmp_path / "out"
    config = pii_config(tmp_path, out)
    with caplog.at_level(logging.DEBUG):
        state = segmentation_flow(config=config, as_of=AS_OF, return_state=True)
    summary = state.result()
    APILogHandler().flush()
    assert summary["customers"] == N_CUSTOMERS - len(FOREIGN) - len(BAD_MAILS)

    outputs = {"caplog": caplog.text, **asyncio.run(prefect_records(state.state_details.flow_run_id))}
    outputs["prefect database"] = prefect_database_bytes().decode("utf-8", errors="replace")
    storage = Path(get_current_settings().results.local_storage_path).expanduser()
    for path in [*storage.rglob("*"), *out.rglob("*")] if storage.exists() else out.rglob("*"):
        if path.is_file() and path.suffix not in (".parquet", ".duckdb", ".wal"):
            outputs[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    outputs.update(published_tables(out))

    # the outputs are there to search: logs, artifacts, the report, validation files, the tables
    assert "features:" in outputs["logs"] and "quality-customers" in outputs["artifacts"]
    assert any(name.endswith(".html") for name in outputs) and any(name.endswith(".json") for name in outputs)
    assert "withheld from the features" in outputs["logs"]
    quarantine = outputs["duckdb segments.quarantine"]
    assert quarantine.count(PERSONAL_DATA_WITHHELD) == 3 * (len(BAD_MAILS) + len(FOREIGN))
    runs = outputs["duckdb segments.segmentation_runs"]
    assert "telefon" not in runs and "besuche" in runs  # the personal number was not a feature

    found = {name: leaks(text) for name, text in outputs.items()}
    assert not {name: values[:3] for name, values in found.items() if values}
