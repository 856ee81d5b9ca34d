"""The Dask execution mode runs the whole flow on a LocalCluster and segments as the local mode does.

How the two runs are made comparable: the 3,000 customers are fewer than `execution.fit_rows`, so
dask mode's fit sample is every customer, in source order, after the same contract checks and
features (computed per partition of customers). Preprocessing, scaling and clustering then see the
same table as the single-process run, with the same seed, and must give the same segments; the
partitioned assignment must agree with the fit on every customer. The sources are split into
several partitions (partition_rows 10,000 against ~36,000 transactions) so that the per-partition
checks and the co-partitioning by customer id are exercised.

An order id reused by another customer usually lands in another partition; the pre-pass over the
whole source must find it as local mode does (`test_dask_mode_finds_order_ids_repeated_across_partitions`).
"""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segflow.config import build_config
from segflow.contracts.rules import CompiledRule
from segflow.dask import ROW
from segflow.dask.repeats import cross_partition_repeats
from segflow.demo import demo_config as segflow_demo_config
from segflow.flows.segmentation import segmentation_flow
from tests.helpers import check_file

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
AS_OF = date(2026, 11, 1)


def demo_config(small_demo, folder, execution: dict):
    raw = segflow_demo_config(folder, small_demo)
    raw["clustering"] = {"algorithm": "kmeans", "k": [3, 6], "fit_sample_size": 1500}
    raw["gate"] = {"stability_resamples": 1}
    raw["publish"].update(parquet=str(folder / "pq"), reports=str(folder / "r"))
    raw["publish"]["warehouse"] = f"duckdb:///{folder / 'w.duckdb'}"
    raw["execution"] = execution
    return build_config(raw)


def published(folder) -> tuple[pd.DataFrame, dict]:
    with duckdb.connect(str(folder / "w.duckdb"), read_only=True) as connection:
        segments = connection.sql(
            "SELECT customer_id, segment_key FROM segments.customer_segments ORDER BY customer_id"
        ).df()
        run = connection.sql(
            "SELECT status, rows_read, rows_quarantined, rows_published FROM segments.segmentation_runs"
        ).df()
        quarantine = connection.sql(
            "SELECT source, rule, row_number FROM segments.quarantine ORDER BY source, rule, row_number"
        ).df()
        rfm_scores = connection.sql("SELECT * FROM segments.customer_rfm_scores ORDER BY customer_id").df()
    return segments, {"run": run.iloc[0].to_dict(), "quarantine": quarantine, "rfm_scores": rfm_scores}


def local_and_dask(data: dict, folder, partition_rows: int, keep_work: bool = False) -> tuple[dict, dict]:
    """The flow on the same data in local mode (under folder/local) and in dask mode on two
    LocalCluster workers (under folder/dask, its partition files under folder/work)."""
    local = segmentation_flow(config=demo_config(data, folder / "local", {}), as_of=AS_OF)
    execution = {
        "mode": "dask",
        "n_workers": 2,
        "memory_limit_per_worker": "1.5GB",
        "partition_rows": partition_rows,
        "work_folder": str(folder / "work"),
        "keep_work": keep_work,
    }
    partitioned = segmentation_flow(config=demo_config(data, folder / "dask", execution), as_of=AS_OF)
    return local, partitioned


def assert_dask_published_what_local_did(folder) -> pd.DataFrame:
    """The same rows read and quarantined, by the same rules, with the same source row numbers,
    and the same segment of every customer; the quarantine."""
    local_segments, local_facts = published(folder / "local")
    dask_segments, dask_facts = published(folder / "dask")
    pd.testing.assert_frame_equal(dask_facts["quarantine"], local_facts["quarantine"])
    for fact in ("rows_read", "rows_quarantined", "rows_published"):
        assert dask_facts["run"][fact] == local_facts["run"][fact], fact
    assert list(dask_segments["customer_id"]) == list(local_segments["customer_id"])
    assert (dask_segments["segment_key"] == local_segments["segment_key"]).all()
    # the RFM scores, computed on the workers, are the ones of local mode
    pd.testing.assert_frame_equal(dask_facts["rfm_scores"], local_facts["rfm_scores"])
    assert len(local_facts["rfm_scores"]) == len(local_segments)
    return local_facts["quarantine"]


def test_dask_mode_publishes_the_segments_of_local_mode(tmp_path, small_demo):
    local, partitioned = local_and_dask(small_demo, tmp_path, partition_rows=10_000)

    assert partitioned["status"] == "published"
    assert partitioned["customers"] == local["customers"] > 2900
    assert_dask_published_what_local_did(tmp_path)
    # the published Parquet snapshot is the warehouse's
    snapshot = pq.read_table(tmp_path / "dask" / "pq" / "current" / "customer_segments.parquet")
    assert snapshot.num_rows == partitioned["customers"]
    # the run's partition files leave the configured work folder with the run
    assert (tmp_path / "work").is_dir() and not list((tmp_path / "work").iterdir())


def test_dask_mode_finds_order_ids_repeated_across_partitions(tmp_path, small_demo):
    """Order ids reused by other customers (two or three customers each, rows that pass every other
    rule): local mode quarantines every later use under 'order_id unique', dask mode the same rows,
    although the customers of a reused id sit in different partitions."""
    transactions = pq.read_table(small_demo["transactions"]).to_pandas()
    contract = segflow_demo_config(tmp_path, small_demo)["sources"]["transactions"]["contract"]
    clean = check_file(transactions, contract, "transactions").passed_rows.index
    clean = clean[~transactions.loc[clean, "order_id"].duplicated(keep=False).to_numpy()]
    groups = np.random.default_rng(5).choice(clean, size=(120, 3), replace=False)
    groups[:60, 2] = -1  # the first 60 ids are used twice, the others three times
    planted = []
    for group in groups:
        rows = group[group >= 0]
        if transactions.loc[rows, "customer_id"].nunique() == len(rows):
            transactions.loc[rows, "order_id"] = transactions.loc[rows.min(), "order_id"]
            planted.append(np.sort(rows))
    data = {"customers": small_demo["customers"], "transactions": tmp_path / "transactions.parquet"}
    pq.write_table(pa.Table.from_pandas(transactions, preserve_index=False), data["transactions"])
    local, partitioned = local_and_dask(data, tmp_path, partition_rows=5_000, keep_work=True)

    assert partitioned["status"] == local["status"] == "published"
    # the customers of a reused id sit in different partitions (read from the partition files)
    partition_of = {
        customer: path.name
        for path in sorted((tmp_path / "work").glob("*/features/part-*.parquet"))
        for customer in pq.read_table(path, columns=["customer_id"])["customer_id"].to_pylist()
    }
    owners = transactions["customer_id"].to_numpy()
    crossing = [rows for rows in planted if len({partition_of[owners[r]] for r in rows}) > 1]
    assert len(crossing) > 50
    # dask mode quarantines the same rows under the same rules, and publishes the same segments
    quarantine = assert_dask_published_what_local_did(tmp_path)
    repeats = quarantine.query("rule == 'order_id unique'")["row_number"]
    assert {int(row) for rows in planted for row in rows[1:]} <= set(repeats)


def test_cross_partition_repeats_are_rows_whose_key_comes_first_in_another_partition():
    """A partition of rows 10-15, 20, 30 and 31; another rule quarantines rows 11 and 14, the repeat
    rule judges the others."""
    keys = pd.DataFrame(
        {
            "order_id": ["a", "b", "c", "a", "e", "x", "y"],
            "channel": ["web", "web", "web", "web", "web", None, "app"],
        },
        index=pd.Index([10, 12, 13, 20, 15, 30, 31], name=ROW),
    )
    partition_rows = pd.Index([10, 11, 12, 13, 14, 15, 20, 30, 31], name=ROW)
    occurrences = pd.DataFrame(
        [
            ("a", "web", 3),  # elsewhere, earlier: row 10 repeats it; row 20 repeats row 10 here
            ("a", "web", 10),
            ("a", "web", 20),
            ("b", "web", 11),  # here, but failing another rule: row 12 is the first acceptable one
            ("b", "web", 12),
            ("b", "web", 40),  # elsewhere, later
            ("c", "store", 1),  # another key than row 13's
            ("c", "store", 50),
            ("e", "web", 14),  # here, not judged by the rule (row 14 is not in keys)...
            ("e", "web", 15),
            ("e", "web", 9),  # ...and elsewhere, earlier: row 15 repeats it
            ("x", None, 30),
            ("x", None, 2),  # a partly null key repeats as pandas' duplicated says
            ("y", "app", 31),
            ("y", "app", 31_000),
        ],
        columns=["order_id", "channel", ROW],
    )

    found = cross_partition_repeats(keys, partition_rows, occurrences)

    assert found.tolist() == [10, 15, 30]


def unique_rule(kwargs: dict) -> CompiledRule:
    expectation = {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "order_id", **kwargs}}
    return CompiledRule("unique", "order_id", ("order_id",), "critical", expectation, "repeats", None)


def test_a_repeat_rule_without_threshold_holds_as_its_expectation_says():
    """A structural `unique: true` has no threshold: no repeat may be found, or GX's `mostly`."""
    assert unique_rule({}).holds_for(0, 100)
    assert not unique_rule({}).holds_for(1, 100)
    assert unique_rule({"mostly": 0.9}).holds_for(10, 100)
    assert not unique_rule({"mostly": 0.9}).holds_for(11, 100)


def test_a_run_works_only_in_a_folder_it_creates_itself(tmp_path):
    from segflow.config import ExecutionConfig
    from segflow.dask.cluster import work_folder
    from segflow.errors import ConfigError

    execution = ExecutionConfig(mode="dask", work_folder=tmp_path / "work")
    with work_folder(execution, "run-1") as folder:
        assert folder == tmp_path / "work" / "run-1" and oct(folder.stat().st_mode & 0o777) == "0o750"
    assert not folder.exists()
    (tmp_path / "work" / "run-2").mkdir()  # planted before the run
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "work" / "run-3").symlink_to(tmp_path / "elsewhere")
    for planted in ("run-2", "run-3"):
        with pytest.raises(ConfigError, match="already exists"), work_folder(execution, planted):
            pass
    assert (tmp_path / "elsewhere").exists()  # a refused link is left alone, not removed through


def test_the_local_cluster_listens_on_this_machine_and_a_remote_one_can_use_tls(tmp_path):
    from segflow.config import ExecutionConfig
    from segflow.dask.cluster import task_runner

    local = task_runner(ExecutionConfig(mode="dask"))
    assert local.cluster_kwargs["host"] == "127.0.0.1"
    assert local.cluster_kwargs["dashboard_address"].startswith("127.0.0.1:")
    with pytest.raises(ValueError, match="tls:// scheduler_address needs"):
        ExecutionConfig(mode="dask", scheduler_address="tls://10.0.0.5:8786")
    files = {name: tmp_path / name for name in ("ca.pem", "client.pem", "client.key")}
    remote = ExecutionConfig(
        mode="dask",
        scheduler_address="tls://10.0.0.5:8786",
        tls_ca_file=files["ca.pem"],
        tls_cert_file=files["client.pem"],
        tls_key_file=files["client.key"],
    )
    security = task_runner(remote).client_kwargs["security"]
    assert security.require_encryption and security.tls_ca_file == str(files["ca.pem"])
