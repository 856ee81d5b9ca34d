"""The config model: unknown keys and impossible values fail early, naming the key."""

from pathlib import Path

import pytest

from segflow.config import build_config, read_config_file
from segflow.errors import ConfigError

MINIMAL = {"sources": {"transactions": {"uri": "data/tx.parquet"}}}


def test_minimal_config_gets_the_documented_defaults():
    config = build_config(MINIMAL)
    assert config.sources.transactions.timestamp_column == "order_ts"
    assert config.clustering.algorithm == "auto"
    assert config.clustering.k == (3, 10)  # [min_segments, max_segments]
    assert config.gate.min_silhouette == 0.25
    assert config.publish.schema_name == "segments"
    assert config.sources.configured() == [("transactions", config.sources.transactions)]


def test_overrides_are_typed_from_yaml():
    config = build_config(
        MINIMAL,
        [
            "clustering.algorithm=kmeans",
            "clustering.k=[3, 5]",
            "gate.min_silhouette=0.4",
            "publish.parquet=null",
        ],
    )
    assert config.clustering.algorithm == "kmeans"
    assert config.clustering.k == (3, 5)
    assert config.gate.min_silhouette == 0.4
    assert config.publish.parquet is None


@pytest.mark.parametrize(
    ("overrides", "named_key"),
    [
        (["clustering.algoritm=kmeans"], "clustering.algoritm"),
        (["clustering.algorithm=magic"], "clustering.algorithm"),
        (["clustering.k=[5, 2]"], "clustering.k"),
        (["gate.min_silhouette=2"], "gate.min_silhouette"),
        (["preprocess.scaler=zscore"], "preprocess.scaler"),
        (["publish.schema=segments; DROP TABLE x; --"], "publish.schema"),
        (["publish.warehouse=mysql://x"], "publish.warehouse"),
        (["nonsense=1"], "nonsense"),
    ],
)
def test_bad_keys_and_values_are_named(overrides, named_key):
    with pytest.raises(ConfigError) as raised:
        build_config(MINIMAL, overrides)
    assert f"'{named_key}'" in str(raised.value)
    assert raised.value.exit_code == 2


def test_a_config_needs_a_source():
    with pytest.raises(ConfigError, match="at least one source"):
        build_config({"sources": {}})


def test_set_without_equals_is_a_usage_error():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        build_config(MINIMAL, ["clustering.algorithm"])


def test_config_file_must_be_a_mapping_of_safe_yaml(tmp_path: Path):
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("sources: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config_file(unsafe)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_config_file(listing)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(tmp_path / "absent.yaml")


def test_the_k_search_aims_at_the_gate_segment_sizes_unless_told_otherwise():
    raw = {"sources": {"transactions": {"uri": "tx.parquet"}}, "gate": {"min_segment_share": 0.05}}
    assert build_config(raw).clustering.min_segment_share == 0.05
    assert build_config(raw, ["clustering.min_segment_share=0.02"]).clustering.min_segment_share == 0.02
