"""Hostile input: injection attempts, escaping paths, unsafe or explosive YAML, huge files and odd
Unicode, through `segflow run` (segflow.cli.main). Each is refused with exit 2 naming the key or
file, or handled correctly and never executed. tests/BAD_INPUTS.md lists them ("Hostile input").
"""

from __future__ import annotations

import json
import os
import time
import unicodedata
import uuid
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from segflow.cli import main
from segflow.demo import contracts_folder
from tests.test_flow import unseen_transactions

AS_OF = "2026-11-01"
INJECTION = 'x"; DROP TABLE segments.customer_segments; --'
TABLE_NAMES = "SELECT table_name FROM information_schema.tables"


def write_config(folder: Path, raw: dict) -> Path:
    path = folder / "segflow.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def base_config(folder: Path, **sections) -> dict:
    """A runnable config on unseen transactions, publishing under `folder`."""
    transactions = folder / "zahlungen.parquet"
    if not transactions.exists():
        unseen_transactions().to_parquet(transactions)
    raw = {
        "sources": {
            "transactions": {
                "uri": str(transactions),
                "id_column": "KundenNr",
                "timestamp_column": "Zahlungszeit",
                "amount_column": "Betrag",
            }
        },
        "clustering": {"algorithm": "kmeans", "k": [2, 5]},
        "publish": {
            "warehouse": f"duckdb:///{folder / 'w.duckdb'}",
            "parquet": str(folder / "pq"),
            "reports": str(folder / "reports"),
        },
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


def run(capsys, *arguments: str) -> tuple[int, str]:
    """`segflow run` in this process: the exit code and what it printed to stderr."""
    code = main(["run", "--as-of", AS_OF, *arguments])
    return code, capsys.readouterr().err


def nothing_written(folder: Path) -> bool:
    return not any((folder / name).exists() for name in ("w.duckdb", "pq", "reports"))


# --- config values: refused before any data is read --------------------------------------------

SOURCE = "sources.transactions"
CONFIG_VALUES = {
    "schema name with SQL": ("publish.schema=segments; DROP TABLE x; --", "publish.schema"),
    "?table= with SQL": (f"{SOURCE}.uri=duckdb:///in.duckdb?table=t; DROP TABLE y", f"{SOURCE}.uri"),
    "?table= with quoted SQL (PostgreSQL)": (
        f'{SOURCE}.uri=postgresql://reader@db/dw?table=public.t"; DROP TABLE y; --',
        f"{SOURCE}.uri",
    ),
    "?table= percent-encoded SQL": (
        f"{SOURCE}.uri=duckdb:///in.duckdb?table=t%3B%20DROP%20TABLE%20y",
        f"{SOURCE}.uri",
    ),
    "?table= given twice": (f"{SOURCE}.uri=duckdb:///in.duckdb?table=t&table=u", f"{SOURCE}.uri"),
    "?table= with three parts": (f"{SOURCE}.uri=duckdb:///in.duckdb?table=a.b.c", f"{SOURCE}.uri"),
    "database source without ?table=": (f"{SOURCE}.uri=duckdb:///in.duckdb", f"{SOURCE}.uri"),
    "NUL byte in a source path": (f'{SOURCE}.uri="tx\\0.parquet"', f"{SOURCE}.uri"),
    "right-to-left override in a source path": (f"{SOURCE}.uri=tx\u202eteuqrap.csv", f"{SOURCE}.uri"),
    "reports folder climbing out": ("publish.reports=../../etc", "publish.reports"),
    "parquet folder climbing out": ("publish.parquet=out/../../../home", "publish.parquet"),
    "reports in a system folder": ("publish.reports=/etc/segflow", "publish.reports"),
    "parquet at the file system root": ("publish.parquet=/", "publish.parquet"),
    "warehouse file climbing out": ("publish.warehouse=duckdb:///../../w.duckdb", "publish.warehouse"),
    "warehouse file in /proc": ("publish.warehouse=duckdb:////proc/w.duckdb", "publish.warehouse"),
    "newline in the reports folder": ('publish.reports="out\\nX"', "publish.reports"),
    "contract that is not a YAML file": (f"{SOURCE}.contract=/etc/passwd", f"{SOURCE}.contract"),
    "unsafe tag in a --set value": (
        "clustering.algorithm=!!python/object/apply:os.system ['touch PWNED']",
        "--set clustering.algorithm",
    ),
    "deeply nested --set value": ("features.numeric=" + "[" * 5000 + "]" * 5000, "--set features.numeric"),
}


@pytest.mark.parametrize("name", list(CONFIG_VALUES))
def test_hostile_config_values_exit_2_naming_the_key(name, tmp_path, capsys, monkeypatch):
    override, key = CONFIG_VALUES[name]
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, base_config(tmp_path))
    code, stderr = run(capsys, "--config", str(config), "--set", override)
    assert code == 2, stderr
    assert f"'{key}'" in stderr or stderr.startswith(f"segflow: {key}"), stderr
    assert nothing_written(tmp_path) and not (tmp_path / "PWNED").exists()


def test_the_same_paths_written_plainly_are_accepted(tmp_path):
    from segflow.config import build_config

    config = build_config(
        base_config(tmp_path),
        [f"publish.reports={tmp_path}/reports", "publish.parquet=out/pq", f"{SOURCE}.contract=c.yml"],
    )
    assert config.publish.reports == tmp_path / "reports"
    assert str(config.sources.transactions.contract) == "c.yml"


# --- config files: unsafe tags, explosive YAML, huge or odd files -----------------------------

LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"
    for previous, name in zip("abcdefghi", "bcdefghij", strict=True)
)
UNSAFE_TAGS = [
    "sources: !!python/object/apply:os.system ['touch PWNED']\n",
    "sources: !!python/object/new:subprocess.Popen [['touch', 'PWNED']]\n",
    "sources: !!python/name:os.system\n",
    "sources: !!binary aGVsbG8=\npublish: !!python/module:os\n",
]


def config_texts(tmp_path: Path) -> dict[str, tuple[str | bytes, str]]:
    """Config file contents and a fragment of the message each must give."""
    valid = yaml.safe_dump(base_config(tmp_path))
    return {
        **{f"unsafe tag {i}": (text, "is not valid YAML") for i, text in enumerate(UNSAFE_TAGS)},
        "billion laughs": ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + LAUGHS + valid, "aliases expand"),
        "laughs used by a key": (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + LAUGHS + valid + "features: {numeric: *j}\n",
            "aliases expand",
        ),
        "recursive alias": ("a: &a [1, *a]\n" + valid, "refers to itself"),
        "deep nesting": ("sources: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper"),
        "deep mapping nesting": (
            "".join(f"{' ' * i}k{i}:\n" for i in range(200)) + " " * 200 + "v: 1\n",
            "nested",
        ),
        "NUL byte": (valid + "# \x00\n", "is not valid YAML"),
        "latin-1 text": (valid.encode("utf-8") + "# Gr\u00fc\u00dfe\n".encode("latin-1"), "not UTF-8"),
        "50 MB": (valid + "# " + "x" * (50 * 1024 * 1024) + "\n", "limit"),
        "a list, not a mapping": ("- sources\n- publish\n", "mapping"),
    }


@pytest.mark.parametrize(
    "name",
    [
        *[f"unsafe tag {i}" for i in range(len(UNSAFE_TAGS))],
        "billion laughs",
        "laughs used by a key",
        "recursive alias",
        "deep nesting",
        "deep mapping nesting",
        "NUL byte",
        "latin-1 text",
        "50 MB",
        "a list, not a mapping",
    ],
)
def test_hostile_config_files_exit_2_quickly_and_run_nothing(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, message = config_texts(tmp_path)[name]
    path = tmp_path / "hostile.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    started = time.monotonic()
    code, stderr = run(capsys, "--config", str(path))
    assert code == 2, stderr
    assert message in stderr and str(path) in stderr
    assert time.monotonic() - started < 10
    assert len(stderr) < 2_000  # a message, not the file
    assert nothing_written(tmp_path) and not (tmp_path / "PWNED").exists()


def test_config_paths_that_are_not_files_exit_2_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)  # opening it would wait forever for a writer
    for path, message in [
        ("/dev/zero", "not a regular file"),
        (str(fifo), "not a regular file"),
        (str(tmp_path), "not a regular file"),
        (str(tmp_path / "absent.yaml"), "cannot read config file"),
    ]:
        code, stderr = run(capsys, "--config", path)
        assert code == 2 and message in stderr, (path, stderr)


# --- data contracts: refused with exit 2 when the run reaches them ----------------------------

SECRET = f"hunter2-{uuid.uuid4().hex}"


def contract_texts() -> dict[str, tuple[str, str]]:
    valid = (contracts_folder() / "transactions.odcs.yaml").read_text(encoding="utf-8")
    return {
        "unsafe tag": (
            valid + "customProperties: !!python/object/apply:os.system ['touch PWNED']\n",
            "is not valid YAML",
        ),
        "unsafe tag in a custom rule's implementation": (
            valid.replace(
                "            implementation:\n              type: expect_column_values_to_be_between\n"
                "              kwargs:\n                min_value: 0\n                strict_min: true\n"
                "                max_value: 100000\n",
                "            implementation: \"!!python/object/apply:os.system ['touch PWNED']\"\n",
            ),
            "implementation is not valid YAML",
        ),
        "billion laughs": ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + LAUGHS + valid, "aliases expand"),
        "50 MB": (valid + "# " + "x" * (50 * 1024 * 1024) + "\n", "limit"),
        "a file of secrets named .yaml": (
            f"# deploy settings\ndb_user: app\n\tdb_password: {SECRET}\n",
            "is not valid YAML",
        ),
    }


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    "name",
    [
        "unsafe tag",
        "unsafe tag in a custom rule's implementation",
        "billion laughs",
        "50 MB",
        "a file of secrets named .yaml",
    ],
)
def test_hostile_contracts_exit_2_naming_the_file_and_never_quote_it(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, message = contract_texts()[name]
    contract = tmp_path / "hostile.odcs.yaml"
    contract.write_text(text, encoding="utf-8")
    raw = base_config(tmp_path)
    transactions = unseen_transactions().rename(
        columns={"KundenNr": "customer_id", "Zahlungszeit": "order_ts", "Betrag": "amount"}
    )
    transactions.to_parquet(tmp_path / "transactions.parquet")
    raw["sources"]["transactions"] = {
        "uri": str(tmp_path / "transactions.parquet"),
        "contract": str(contract),
    }
    code, stderr = run(capsys, "--config", str(write_config(tmp_path, raw)))
    assert code == 2, stderr
    assert message in stderr and str(contract) in stderr
    assert SECRET not in stderr and not (tmp_path / "PWNED").exists()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        runs = connection.sql("SELECT status, message FROM segments.segmentation_runs").fetchall()
        tables = {row[0] for row in connection.sql(TABLE_NAMES).fetchall()}
    assert [status for status, _ in runs] == ["failed"] and SECRET not in runs[0][1]
    assert "customer_segments" not in tables


# --- data: odd names and odd Unicode are data, never code --------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_injection_in_column_names_is_data_never_sql(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = "<script>alert(1)</script>"
    transactions = unseen_transactions().rename(
        columns={"KundenNr": INJECTION, "Zahlungszeit": "ts'; --", "Betrag": "amount`) OR 1=1"}
    )
    customers = pd.DataFrame({INJECTION: transactions[INJECTION].unique(), script: "A"})
    customers.loc[customers.index % 3 == 0, script] = "<img src=x onerror=alert(2)>"
    transactions.to_parquet(tmp_path / "zahlungen.parquet")
    customers.to_parquet(tmp_path / "kunden.parquet")
    raw = base_config(tmp_path, features={"categorical": [script]})
    raw["sources"]["transactions"].update(
        {"id_column": INJECTION, "timestamp_column": "ts'; --", "amount_column": "amount`) OR 1=1"}
    )
    raw["sources"]["customers"] = {"uri": str(tmp_path / "kunden.parquet"), "id_column": INJECTION}
    code, stderr = run(capsys, "--config", str(write_config(tmp_path, raw)))
    assert code == 0, stderr
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        count = connection.sql(
            "SELECT count(DISTINCT customer_id) FROM segments.customer_segments"
        ).fetchall()
        tables = {row[0] for row in connection.sql(TABLE_NAMES).fetchall()}
    assert count[0][0] == 1200
    assert {"customer_segments", "segment_changes", "segmentation_runs", "quarantine"} <= tables
    report = next((tmp_path / "reports").glob("*.html")).read_text(encoding="utf-8")
    assert "<script>alert" not in report and "<img src=x" not in report


ODD_IDS = [
    "C-\u200fRTL-mark",
    "C-\u202eoverride",
    "C-zero\u200bwidth",
    "C-\u2060joiner",
    "C-emoji-\U0001f600",
    "C-family-\U0001f468\u200d\U0001f469\u200d\U0001f467",
    unicodedata.normalize("NFC", "C-Zo\u00eb"),
    unicodedata.normalize("NFD", "C-Zo\u00eb"),
    "C-NUL\x00byte",
    "C-\ufeffbom",
    "C-trailing-space ",
    "C-\u0130stanbul",
]


CHANNEL_SPELLINGS = {
    "café": [
        unicodedata.normalize("NFC", "Café"),
        unicodedata.normalize("NFD", "Café"),
        "caf\u00e9\u200b",
        "\u200fCAFÉ",
    ],
    "web": ["web", "W\u200beb", "web\x00", "\ufeffweb", "\uff37\uff45\uff42"],  # fullwidth ｗｅｂ
    "store": ["store", "\u202estore\u202c", "Store\u00ad"],
}


@pytest.mark.usefixtures("prefect_harness")
def test_odd_unicode_ids_are_published_unchanged_and_categories_unified(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    transactions = unseen_transactions()
    plain = sorted(transactions["KundenNr"].unique())
    renamed = {old: ODD_IDS[i] if i < len(ODD_IDS) else f"C{old}" for i, old in enumerate(plain)}
    transactions["KundenNr"] = transactions["KundenNr"].map(renamed)
    transactions.to_parquet(tmp_path / "zahlungen.parquet")
    spellings = [spelling for variants in CHANNEL_SPELLINGS.values() for spelling in variants]
    ids = list(renamed.values())
    customers = pd.DataFrame(
        {"KundenNr": ids, "Kanal": [spellings[i % len(spellings)] for i in range(len(ids))]}
    )
    customers.to_parquet(tmp_path / "kunden.parquet")
    raw = base_config(tmp_path, features={"categorical": ["Kanal"]})
    raw["sources"]["customers"] = {"uri": str(tmp_path / "kunden.parquet"), "id_column": "KundenNr"}
    code, stderr = run(capsys, "--config", str(write_config(tmp_path, raw)))
    assert code == 0, stderr
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as connection:
        warehouse_ids = [
            row[0] for row in connection.sql("SELECT customer_id FROM segments.customer_segments").fetchall()
        ]
        details = connection.sql("SELECT details FROM segments.segmentation_runs").fetchall()[0][0]
    parquet_ids = pq.read_table(tmp_path / "pq" / "current" / "customer_segments.parquet").column(
        "customer_id"
    )
    for published in (warehouse_ids, parquet_ids.to_pylist()):
        assert len(published) == len(set(published)) == 1200
        assert set(ODD_IDS) <= set(published)  # byte for byte: no normalising, trimming or merging
    categories = json.loads(details)["preprocess"]["categories"]["Kanal"]
    assert sorted(categories) == sorted(CHANNEL_SPELLINGS)  # one category per meaning


@pytest.mark.usefixtures("prefect_harness")
def test_a_broken_contract_stops_the_run_before_any_source_is_read(tmp_path, capsys, monkeypatch):
    """The contracts are compiled first: the absent source is never reached."""
    monkeypatch.chdir(tmp_path)
    contract = tmp_path / "broken.odcs.yaml"
    contract.write_text("apiVersion: v3.1.0\nkind: DataContract\nschema: [", encoding="utf-8")
    raw = base_config(tmp_path)
    raw["sources"]["transactions"]["uri"] = str(tmp_path / "absent.parquet")
    raw["sources"]["transactions"]["contract"] = str(contract)
    code, stderr = run(capsys, "--config", str(write_config(tmp_path, raw)))
    assert code == 2, stderr
    assert "is not valid YAML" in stderr and str(contract) in stderr
    assert "absent.parquet" not in stderr
