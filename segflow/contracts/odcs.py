"""ODCS v3 data contracts: read a contract file, check it against the ODCS JSON Schema, and compile
each of its schema objects into segflow's rules (the vocabulary is in `segflow.contracts.compiler`)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

from segflow.config import SourcesConfig
from segflow.contracts.compiler import property_rules, schema_rule
from segflow.contracts.rules import CompiledContract, CompiledRule
from segflow.errors import ConfigError
from segflow.safe_yaml import load_yaml_file


def load_contract(path: str | Path) -> dict:
    """Read an ODCS v3 contract and check it against the ODCS JSON Schema."""
    path = Path(path)
    contract = load_yaml_file(path, "data contract")
    if not isinstance(contract, dict) or contract.get("kind") != "DataContract":
        raise ConfigError(
            f"{path} is not an ODCS data contract: expected a mapping with "
            "'kind: DataContract' and 'apiVersion: v3.x'"
        )
    if not str(contract.get("apiVersion", "")).startswith("v3."):
        raise ConfigError(
            f"data contract {path} has apiVersion {contract.get('apiVersion')!r}; "
            "segflow reads ODCS v3 contracts (apiVersion v3.x)"
        )
    errors = sorted(_odcs_validator().iter_errors(contract), key=lambda e: list(map(str, e.path)))
    if errors:
        # The ODCS schema combines sub-schemas, so one mistake can be reported more than once.
        problems = [f"at {_location(contract, e.absolute_path)}: {_problem(e)}" for e in errors]
        details = "; ".join(list(dict.fromkeys(problems))[:5])
        raise ConfigError(f"data contract {path} does not follow the ODCS schema: {details}")
    if not contract.get("schema"):
        raise ConfigError(f"data contract {path} describes no table: its 'schema' list is empty")
    return contract


def compile_contract(contract: dict, object_name: str | None = None, path: str = "") -> CompiledContract:
    """Translate one schema object of a contract (the one named object_name, or the only one) into
    segflow's rules; `path` is the file it came from, named in every outcome's message."""
    schema_object = _schema_object(contract, object_name)
    object_name = schema_object["name"]
    # A property's column in the table is its physicalName where it has one.
    declared = schema_object.get("properties") or []
    physical = {p["name"]: p.get("physicalName") or p["name"] for p in declared}
    properties = [{**p, "name": physical[p["name"]]} for p in declared]
    columns = {prop["name"]: prop.get("logicalType") for prop in properties}
    by_case = {}
    for column in columns:  # GX finds a column by its name without regard to case
        if by_case.setdefault(column.casefold(), column) != column:
            raise ConfigError(
                f"schema '{object_name}': columns '{by_case[column.casefold()]}' and '{column}' differ "
                "only in case; Great Expectations would check one for the other: rename one"
            )
    rules: list[CompiledRule] = []
    for prop in properties:
        rules += property_rules(prop, f"schema '{object_name}', property '{prop['name']}'")
    for position, quality in enumerate(schema_object.get("quality") or []):
        where = f"schema '{object_name}', quality[{position}]"
        rule = schema_rule(quality, columns, physical, where)
        if rule is not None:
            rules.append(rule)
    required = frozenset(
        prop["name"] for prop in properties if prop.get("required") or prop.get("primaryKey")
    )
    return CompiledContract(
        name=str(contract.get("name") or object_name),
        version=str(contract.get("version", "")),
        path=path,
        object_name=object_name,
        physical_name=schema_object.get("physicalName"),
        columns=columns,
        required=required,
        rules=rules,
        personal=frozenset(prop["name"] for prop in properties if _is_personal(prop)),
    )


def _is_personal(prop: dict) -> bool:
    """Whether a property carries the custom property personalData: true."""
    return any(
        custom.get("property") == "personalData" and str(custom.get("value")).strip().lower() == "true"
        for custom in prop.get("customProperties") or []
    )


def compile_contract_file(path: str | Path) -> dict[str, CompiledContract]:
    """Every schema object of a contract file, compiled once, by object name."""
    contract = load_contract(path)
    try:
        return {
            schema_object["name"]: compile_contract(contract, schema_object["name"], str(path))
            for schema_object in contract["schema"]
        }
    except ConfigError as exc:
        raise ConfigError(f"data contract {path}: {exc}") from exc


def contract_for(contract_path: str | Path, source: str) -> CompiledContract:
    """The compiled rules of a source: its contract's object named like it, or the only one."""
    compiled = compile_contract_file(contract_path)
    named = [c for c in compiled.values() if source in (c.object_name, c.physical_name)]
    if named:
        return named[0]
    if len(compiled) == 1:
        return next(iter(compiled.values()))
    raise ConfigError(
        f"contract '{contract_path}' has schema objects {list(compiled)}; none is named {source!r}"
    )


def compile_source_contracts(sources: SourcesConfig) -> dict[str, CompiledContract]:
    """The compiled contract of every configured source that has one: a broken contract stops the
    run (ConfigError) before any source is read, and no contract is compiled twice."""
    return {
        name: contract_for(source.contract, name)
        for name, source in sources.configured()
        if source.contract is not None
    }


# --- compiling ---------------------------------------------------------------------------------


def _schema_object(contract: dict, object_name: str | None) -> dict:
    objects = contract.get("schema") or []
    named = [o for o in objects if object_name in (o.get("name"), o.get("physicalName"))]
    if object_name is not None and named:
        return named[0]
    if object_name is None and len(objects) == 1:
        return objects[0]
    names = [o.get("name") for o in objects]
    wanted = f"none is named {object_name!r}" if object_name else "name the one to check"
    raise ConfigError(f"contract '{contract.get('name')}' has schema objects {names}; {wanted}")


@functools.cache
def _odcs_validator():
    import jsonschema

    schema = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _problem(error) -> str:
    """A schema error in words; the ODCS schema reports a missing logicalType as a missing 'map'."""
    if (
        error.message == "'map' is a required property"
        and isinstance(error.instance, dict)
        and "logicalType" not in error.instance
    ):
        return "logicalType is missing"
    return error.message


def _location(contract: dict, path) -> str:
    """A JSON path written with the names of the schema objects and properties it passes."""
    parts, node = [], contract
    for key in path:
        node = node[key]
        if isinstance(key, int):
            name = node.get("name") if isinstance(node, dict) else None
            parts[-1] += f"[{name!r}]" if name else f"[{key}]"
        else:
            parts.append(str(key))
    return ".".join(parts) or "the top level"
