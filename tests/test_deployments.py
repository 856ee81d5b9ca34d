"""Deployments: the nightly schedule, and runs that strangers may start but not redirect."""

import pytest
import yaml
from prefect.utilities.callables import parameter_schema

from segflow.config import build_config
from segflow.deployments.serve import nightly_deployment
from segflow.errors import ConfigError
from segflow.flows.run import ALLOWED_OVERRIDES, CONFIG_FILE_VARIABLE, run_config
from segflow.flows.segmentation import segmentation_flow


def test_nightly_deployment_runs_at_two_in_the_given_time_zone_and_carries_no_config():
    deployment = nightly_deployment("America/New_York")
    assert deployment.name == "nightly"
    schedule = deployment.schedules[0].schedule
    assert schedule.cron == "0 2 * * *"
    assert schedule.timezone == "America/New_York"
    assert deployment.parameters == {}  # the config is the worker's file, never a parameter
    form = parameter_schema(segmentation_flow)  # what the Prefect UI renders as the run form
    assert {"as_of", "overrides", "dry_run"} <= set(form.properties)


def test_prefect_yaml_declares_the_same_nightly_schedule_and_no_config_parameter():
    from importlib import resources

    text = resources.files("segflow.deployments").joinpath("prefect.yaml").read_text()
    declared = yaml.safe_load(text)["deployments"]
    assert declared[0]["entrypoint"] == "flows/segmentation.py:segmentation_flow"
    assert declared[0]["schedules"][0] == {"cron": "0 2 * * *", "timezone": "Europe/Berlin", "active": True}
    assert all("parameters" not in deployment for deployment in declared)


@pytest.fixture
def worker_config(tmp_path, monkeypatch):
    path = tmp_path / "segflow.yaml"
    path.write_text(yaml.safe_dump({"sources": {"transactions": {"uri": "tx.parquet"}}}))
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(path))
    return path


def test_a_deployment_run_reads_the_workers_file_and_takes_allow_listed_overrides(worker_config):
    config = run_config(None, {"gate.override": "reviewed by J. Doe", "clustering.k": [3, 5]}, deployed=True)
    assert config.sources.transactions.uri == "tx.parquet"
    assert config.gate.override == "reviewed by J. Doe" and config.clustering.k == (3, 5)


@pytest.mark.parametrize(
    "key",
    [
        "sources.transactions.uri",
        "sources.customers.contract",
        "publish.warehouse",
        "publish.parquet",
        "publish.password_secret",
        "execution.scheduler_address",
        "notify.webhook_url",
        "notify.block",
    ],
)
def test_a_deployment_run_may_not_redirect_data_secrets_the_scheduler_or_the_webhook(worker_config, key):
    assert key not in ALLOWED_OVERRIDES
    with pytest.raises(ConfigError, match=f"may not override {key}"):
        run_config(None, {key: "postgresql://attacker@evil.example/db?table=x"}, deployed=True)


def test_a_deployment_run_refuses_a_whole_config_parameter(worker_config):
    hostile = build_config(
        {"sources": {"transactions": {"uri": "tx.parquet"}}, "publish": {"warehouse": "postgresql://evil/db"}}
    )
    with pytest.raises(ConfigError, match="a deployment run takes no 'config' parameter"):
        run_config(hostile, None, deployed=True)


def test_a_deployment_run_needs_the_workers_config_file(monkeypatch):
    monkeypatch.delenv(CONFIG_FILE_VARIABLE, raising=False)
    with pytest.raises(ConfigError, match="this worker has no SEGFLOW_CONFIG"):
        run_config(None, None, deployed=True)


def test_a_run_in_process_uses_its_own_config():
    config = build_config({"sources": {"transactions": {"uri": "tx.parquet"}}})
    assert run_config(config, None, deployed=False) is config
    assert run_config(config, {"clustering.seed": 7}, deployed=False).clustering.seed == 7
    with pytest.raises(ConfigError, match="no config given"):
        run_config(None, None, deployed=False)
