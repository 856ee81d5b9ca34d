"""Every contract in data_contracts/ is valid ODCS v3, and a mistyped key is rejected."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from segflow.contracts.odcs import load_contract
from segflow.errors import ConfigError

CONTRACTS = sorted((Path(__file__).parents[1] / "data_contracts").glob("*.yaml"))


@pytest.fixture(scope="module")
def odcs_validator():
    schema = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def error_messages(validator, document) -> list[str]:
    return [error.message for error in validator.iter_errors(document)]


def test_the_three_contracts_are_there():
    assert [path.name for path in CONTRACTS] == [
        "customer_segments.odcs.yaml",
        "customers.odcs.yaml",
        "transactions.odcs.yaml",
    ]


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda path: path.name)
def test_contract_follows_the_odcs_json_schema(path, odcs_validator):
    contract = yaml.safe_load(path.read_text())
    assert contract["kind"] == "DataContract"
    assert contract["apiVersion"].startswith("v3.")
    assert error_messages(odcs_validator, contract) == []


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda path: path.name)
def test_contract_uses_only_rules_segflow_enforces(path):
    assert load_contract(path)["version"] == "1.0.0"


def test_schema_rejects_a_mistyped_property_key(odcs_validator):
    contract = yaml.safe_load(CONTRACTS[1].read_text())
    contract["schema"][0]["properties"][0]["requird"] = True
    messages = error_messages(odcs_validator, contract)
    assert messages
    assert set(messages) == {"Unevaluated properties are not allowed ('requird' was unexpected)"}


def test_schema_rejects_a_mistyped_rule_key(odcs_validator):
    contract = yaml.safe_load(CONTRACTS[2].read_text())
    rule = contract["schema"][0]["properties"][0]["quality"][0]
    rule["severty"] = rule.pop("severity")
    assert any("'severty' was unexpected" in m for m in error_messages(odcs_validator, contract))


def test_loader_names_the_mistyped_key_and_where_it_is(tmp_path):
    broken = yaml.safe_load(CONTRACTS[1].read_text())
    broken["schema"][0]["properties"][2]["requird"] = True
    path = tmp_path / "customers.odcs.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(ConfigError) as caught:
        load_contract(path)
    assert str(caught.value) == (
        f"data contract {path} does not follow the ODCS schema: at "
        "schema['customers'].properties['signup_date']: Unevaluated properties are not "
        "allowed ('requird' was unexpected)"
    )
    assert caught.value.exit_code == 2


def test_email_is_marked_as_personal_data():
    contract = yaml.safe_load(CONTRACTS[1].read_text())
    email = next(p for p in contract["schema"][0]["properties"] if p["name"] == "email")
    assert email["classification"] == "restricted"
    assert {"property": "personalData", "value": True} in [
        {"property": c["property"], "value": c["value"]} for c in email["customProperties"]
    ]
