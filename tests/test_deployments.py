"""The nightly deployment: 02:00 in a named time zone, with the config as typed parameters."""

import yaml
from prefect.utilities.callables import parameter_schema

from segflow.config import SegflowConfig, build_config
from segflow.deployments.serve import nightly_deployment
from segflow.flows.segmentation import segmentation_flow


def test_nightly_deployment_runs_at_two_in_the_given_time_zone():
    config = build_config({"sources": {"transactions": {"uri": "tx.parquet"}}})
    deployment = nightly_deployment(config, "America/New_York")
    assert deployment.name == "nightly"
    schedule = deployment.schedules[0].schedule
    assert schedule.cron == "0 2 * * *"
    assert schedule.timezone == "America/New_York"
    # the parameters round-trip into the flow's typed config model
    assert SegflowConfig.model_validate(deployment.parameters["config"]) == config
    form = parameter_schema(segmentation_flow)  # what the Prefect UI renders as the run form
    assert form.properties["config"]["$ref"].endswith("SegflowConfig")
    assert "clustering" in form.definitions["SegflowConfig"]["properties"]


def test_prefect_yaml_declares_the_same_nightly_schedule():
    from importlib import resources

    text = resources.files("segflow.deployments").joinpath("prefect.yaml").read_text()
    declared = yaml.safe_load(text)["deployments"][0]
    assert declared["entrypoint"] == "flows/segmentation.py:segmentation_flow"
    assert declared["schedules"][0] == {"cron": "0 2 * * *", "timezone": "Europe/Berlin", "active": True}
    SegflowConfig.model_validate(declared["parameters"]["config"])
