"""The one typed configuration model, shared by the config file, the CLI and the flow parameters."""

from __future__ import annotations

import codecs
import copy
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segflow.errors import ConfigError
from segflow.safe_yaml import load_yaml_file, load_yaml_text
from segflow.uris import (
    check_identifier,
    check_output_path,
    check_printable,
    duckdb_path,
    redact_uri,
    table_name_in,
    without_secrets,
)


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class SourceConfig(StrictModel):
    """One input table: where it is, its contract, and which column is the customer id."""

    uri: str = Field(min_length=1)
    contract: Path | None = None
    id_column: str = Field("customer_id", min_length=1)
    encoding: str = Field("utf-8", min_length=1)  # of CSV files, e.g. latin-1, utf-16
    password_secret: str | None = None  # name of a Prefect Secret block holding the PostgreSQL password
    # how long one read of the source may take (a locked table, a hung share); not retried when it runs out
    timeout_seconds: float = Field(600, gt=0, le=86_400)

    @field_validator("uri")
    @classmethod
    def _usable_uri(cls, uri: str) -> str:
        uri = check_printable(without_secrets(uri, "uri"), "uri")
        if uri.startswith(("duckdb://", "postgresql://", "postgres://")):
            table_name_in(uri)
        return uri

    @field_validator("contract")
    @classmethod
    def _contract_file(cls, path: Path | None) -> Path | None:
        if path is not None and path.suffix.lower() not in (".yaml", ".yml"):
            raise ValueError(f"a data contract is a .yaml or .yml file, got {str(path)!r}")
        return None if path is None else Path(check_printable(str(path), "contract"))

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            codecs.lookup(encoding)
        except LookupError as error:
            raise ValueError(f"unknown encoding {encoding!r}") from error
        return encoding


class TransactionsSourceConfig(SourceConfig):
    """The purchases table, aggregated into per-customer features."""

    timestamp_column: str = Field("order_ts", min_length=1)
    amount_column: str = Field("amount", min_length=1)


class SourcesConfig(StrictModel):
    customers: SourceConfig | None = None
    transactions: TransactionsSourceConfig | None = None

    def configured(self) -> list[tuple[str, SourceConfig]]:
        """The (name, source) pairs that are set, customers first."""
        pairs = [("customers", self.customers), ("transactions", self.transactions)]
        return [(name, source) for name, source in pairs if source is not None]

    def id_columns(self) -> dict[str, str]:
        return {name: source.id_column for name, source in self.configured()}

    @model_validator(mode="after")
    def _at_least_one(self) -> SourcesConfig:
        if self.customers is None and self.transactions is None:
            raise ValueError("at least one source (customers or transactions) is required")
        return self


class FeaturesConfig(StrictModel):
    rfm: bool = True
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    max_categories: int = Field(20, ge=1, le=1000)


class NamingConfig(StrictModel):
    """What segment names are judged by: absolute recency windows in days, and when a category is
    named (it holds dominant_share of the segment and at most base_share of the base)."""

    active_days: int = Field(90, ge=1)
    lapsing_days: int = Field(365, ge=1)
    dominant_share: float = Field(0.8, gt=0.5, le=1.0)
    base_share: float = Field(0.6, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _windows_in_order(self) -> NamingConfig:
        if self.lapsing_days <= self.active_days:
            raise ValueError(f"lapsing_days {self.lapsing_days} must be above active_days {self.active_days}")
        return self


class PreprocessConfig(StrictModel):
    scaler: Literal["minmax", "standard", "robust"] = "minmax"
    impute: Literal["median", "mean", "zero"] = "median"
    log_transform_skewed: bool = True


class ClusteringConfig(StrictModel):
    """How segments are found: the algorithm (or auto), the k range, sampling and tuning knobs.

    Parameters an algorithm does not use are ignored by it; `None` means "derive from the data"
    and the value actually used is recorded in the segmentation's params.
    """

    algorithm: Literal[
        "auto",
        "kmeans",
        "kmedoids",
        "clarans",
        "agglomerative",
        "birch",
        "diana",
        "dbscan",
        "hdbscan",
        "optics",
        "rfm",
    ] = "auto"
    # how many segments a marketer can act on: every algorithm ends within these bounds (the k
    # search stays inside them; density clusters beyond max_segments are merged)
    min_segments: int = Field(3, ge=2, le=100)
    max_segments: int = Field(10, ge=2, le=100)
    # the k search range; by default [min_segments, max_segments] (a k given here sets the bounds
    # it leaves unset)
    k: tuple[int, int] = (3, 10)
    seed: int = 42
    # rows scored (silhouette, Calinski-Harabasz, Davies-Bouldin): exact silhouette is O(n^2). Beyond
    # the fit sample, rows are labelled by the fit's rule, so the gate also judges the labels most
    # customers get. 5,000 (the fit sample alone) chose the same segmentation on every benchmark
    # dataset, 1.5-2.5 s sooner at 100k customers, but left the rule unjudged (benchmarks/RESULTS.md)
    sample_size: int = Field(10_000, ge=100)
    # the O(n^2) methods fit, and every k search runs, on at most this many rows (a float64
    # distance matrix of 20k rows is 3.2 GB, hence the ceiling)
    fit_sample_size: int = Field(5_000, ge=100, le=20_000)
    # candidates whose validity (silhouette, or DBCV for density methods, above its gate minimum) is
    # within this margin of the best compete on stability; then the more segments, then the simpler
    # algorithm win (segflow/clustering/search.py)
    score_margin: float = Field(0.02, ge=0.0, le=1.0)
    # stability under resampling (adjusted Rand index of refits on subsamples of the fit sample):
    # resamples and minimum are the gate's unless set here; 0 resamples leaves stability out
    stability_resamples: int = Field(3, ge=0, le=50)
    min_stability: float = Field(0.6, ge=-1.0, le=1.0)
    # the validity each family must reach (the gate's): silhouette, and DBCV for density methods
    min_silhouette: float = Field(0.25, ge=-1.0, le=1.0)
    min_dbcv: float = Field(0.15, ge=-1.0, le=1.0)
    auto_candidates: tuple[str, ...] = ("kmeans", "agglomerative", "hdbscan")
    # a density result leaving more than this share of rows as noise cannot win auto
    max_noise_share: float = Field(0.3, ge=0.0, le=1.0)
    # segment sizes a usable segmentation has (shares of the scored rows, as the gate's rules of
    # the same names measure them): the k search and auto choose among the candidates within
    # these bounds, and among all candidates only when none is within them
    min_segment_share: float = Field(0.01, ge=0.0, le=1.0)
    max_segment_share: float = Field(0.8, ge=0.0, le=1.0)
    # kmeans switches to MiniBatchKMeans above this many rows. The full-data fit starts from the
    # sample's centres, so Lloyd converges in 2-3 passes (0.2-0.4 s at 1M x 10); MiniBatchKMeans'
    # stopping rule took 20-635 steps (0.2-5.4 s) there depending on the seed, hence the high default.
    mini_batch_above: int = Field(5_000_000, ge=1_000)
    linkage: Literal["ward", "complete", "average", "single"] = "ward"
    birch_threshold: float | None = Field(None, gt=0.0)
    # CLARA (`clarans`): FasterPAM on this many draws of this many rows from the fit sample
    clara_draws: int = Field(5, ge=1, le=100)
    clara_sample_size: int = Field(1_000, ge=50)
    # density methods: eps defaults to the k-distance knee, min_samples to 2 x features,
    # min_cluster_size to min_segment_share of the fit sample (smaller clusters are noise)
    eps: float | None = Field(None, gt=0.0)
    min_samples: int | None = Field(None, ge=2)
    min_cluster_size: int | None = Field(None, ge=2)
    # OPTICS: None cuts the reachability plot at eps; a value extracts clusters by xi steep areas
    xi: float | None = Field(None, gt=0.0, lt=1.0)

    @model_validator(mode="before")
    @classmethod
    def _k_and_segment_bounds(cls, data: Any) -> Any:
        """k defaults to [min_segments, max_segments]; a k given alone sets those bounds."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("k") is None:
            data["k"] = (data.get("min_segments", 3), data.get("max_segments", 10))
        elif isinstance(data["k"], list | tuple) and len(data["k"]) == 2:
            data.setdefault("min_segments", data["k"][0])
            data.setdefault("max_segments", data["k"][1])
        return data

    @field_validator("k")
    @classmethod
    def _k_range(cls, k: tuple[int, int]) -> tuple[int, int]:
        low, high = k
        if not 2 <= low <= high <= 100:
            raise ValueError(f"k must be [low, high] with 2 <= low <= high <= 100, got {list(k)}")
        return k

    @model_validator(mode="after")
    def _k_within_segment_bounds(self) -> ClusteringConfig:
        if self.min_segments > self.max_segments:
            raise ValueError(f"min_segments {self.min_segments} is above max_segments {self.max_segments}")
        if not self.min_segments <= self.k[0] <= self.k[1] <= self.max_segments:
            raise ValueError(
                f"k {list(self.k)} lies outside [min_segments, max_segments] = "
                f"[{self.min_segments}, {self.max_segments}]"
            )
        return self

    @field_validator("auto_candidates")
    @classmethod
    def _known_candidates(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        # the RFM map is every run's baseline, not a clustering that can win auto
        known = [
            name for name in get_args(cls.model_fields["algorithm"].annotation) if name not in ("auto", "rfm")
        ]
        unknown = [name for name in names if name not in known]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(f"auto_candidates must be distinct names from {known}, got {list(names)}")
        return names


Severity = Literal["critical", "warning"]
GateRule = Literal[
    "min_silhouette",
    "min_dbcv",
    "min_segment_share",
    "max_segment_share",
    "max_noise_share",
    "min_stability",
    "max_changed_share",
    "max_size_shift",
    "max_row_count_change",
]
# rules that only warn unless made critical; every other rule is critical unless made a warning
WARNING_RULES: dict[str, Severity] = {
    "max_changed_share": "warning",
    "max_size_shift": "warning",
    "max_row_count_change": "warning",
}


class GateConfig(StrictModel):
    """Rules a segmentation must pass to be published; a critical failure rejects the run."""

    min_silhouette: float = Field(0.25, ge=-1.0, le=1.0)  # partitioning and hierarchical methods
    # density methods: the density-based clustering validity index (Moulavi et al. 2014), which
    # does not punish non-convex clusters as silhouette does
    min_dbcv: float = Field(0.15, ge=-1.0, le=1.0)
    min_segment_share: float = Field(0.01, ge=0.0, le=1.0)  # smallest segment, noise excluded
    max_segment_share: float = Field(0.8, ge=0.0, le=1.0)  # largest segment
    max_noise_share: float = Field(0.3, ge=0.0, le=1.0)  # density methods' unassigned customers
    min_stability: float = Field(0.6, ge=-1.0, le=1.0)  # mean adjusted Rand index under resampling
    stability_resamples: int = Field(3, ge=0, le=50)  # 0 turns the stability check off
    max_changed_share: float = Field(0.5, ge=0.0, le=1.0)  # of last publication's customers who moved
    max_size_shift: float = Field(0.3, ge=0.0, le=1.0)  # total variation between segment size mixes
    # record-count alert: each source's rows read against the median of the last published runs
    max_row_count_change: float = Field(0.3, ge=0.0)  # |rows - median| / median
    row_count_runs: int = Field(7, ge=1, le=100)  # how many published runs the median is taken over
    severity: dict[GateRule, Severity] = Field(default_factory=lambda: dict(WARNING_RULES))
    override: str | None = Field(None, min_length=3)  # publish despite a rejection, for this run; the reason

    @field_validator("severity")
    @classmethod
    def _over_the_defaults(cls, severity: dict[str, Severity]) -> dict[str, Severity]:
        """Setting one rule's severity leaves the others at their defaults."""
        return {**WARNING_RULES, **severity}


class PublishConfig(StrictModel):
    parquet: Path | None = Path("segflow_output/parquet")
    warehouse: str | None = "duckdb:///segflow_output/warehouse.duckdb"
    schema_name: str = Field("segments", alias="schema")
    reports: Path | None = Path("segflow_output/reports")  # one HTML report per run
    password_secret: str | None = None  # name of a Prefect Secret block holding the warehouse password
    # name of a Prefect Secret block holding the key that signs saved models (default: $SEGFLOW_MODEL_KEY,
    # else ~/.segflow/model.key, generated once); readers of the tables must not be able to read it
    model_key_secret: str | None = None
    # a run waits this long for another run writing to the same targets, then gives up (exit 1)
    lock_timeout_seconds: float = Field(3600.0, ge=0.0)

    @field_validator("schema_name")
    @classmethod
    def _plain_schema(cls, name: str) -> str:
        return check_identifier(name, "schema")

    @field_validator("warehouse")
    @classmethod
    def _known_warehouse(cls, uri: str | None) -> str | None:
        if uri is None:
            return None
        if not uri.startswith(("duckdb://", "postgresql://", "postgres://")):
            raise ValueError("warehouse must be a duckdb:///PATH or postgresql://... URI")
        uri = check_printable(without_secrets(uri, "warehouse"), "warehouse")
        if uri.startswith("duckdb://"):
            check_output_path(duckdb_path(uri), "warehouse")
        return uri

    @field_validator("parquet", "reports")
    @classmethod
    def _safe_folder(cls, folder: Path | None, info) -> Path | None:
        return None if folder is None else Path(check_output_path(str(folder), info.field_name))

    @model_validator(mode="after")
    def _somewhere(self) -> PublishConfig:
        if self.parquet is None and self.warehouse is None:
            raise ValueError("publish needs a parquet folder, a warehouse, or both")
        return self


class ResourcesConfig(StrictModel):
    """What a run may use of the machine; checked against the sources before any is loaded."""

    # None: half of the machine's memory (or of its container's limit)
    memory_budget_gb: float | None = Field(None, gt=0)


class ExecutionConfig(StrictModel):
    """Where a run computes: in this process, or partitioned on a Dask cluster (Parquet and CSV
    sources are read, checked and turned into features on the workers; the model is fitted on a
    sample of customers collected to the flow and every customer is assigned on the workers)."""

    mode: Literal["local", "dask"] = "local"
    # a running Dask scheduler, e.g. tcp://10.0.0.5:8786; None starts a LocalCluster on this machine
    scheduler_address: str | None = Field(None, min_length=1)
    n_workers: int = Field(2, ge=1, le=256)  # of the LocalCluster, one thread each
    memory_limit_per_worker: str = Field("4GB", min_length=1)  # of the LocalCluster, Dask's notation
    partition_rows: int = Field(1_000_000, ge=1_000)  # source rows per partition
    fit_rows: int = Field(200_000, ge=1_000)  # customers the preprocessing, scaling and clustering fit on
    # where the workers write the partitioned features and segments: a folder every worker and the
    # flow can read (a shared mount with a remote scheduler); None: a temporary folder of the flow
    work_folder: Path | None = None
    # keep a run's partition files under work_folder when it ends (to look into them); by default
    # they are removed, so that nightly runs do not fill the shared folder
    keep_work: bool = False
    # a remote scheduler over TLS (scheduler_address tls://...): the CA and this client's certificate
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _tls_complete(self) -> ExecutionConfig:
        files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        if any(files) and not all(files):
            raise ValueError("execution TLS needs tls_ca_file, tls_cert_file and tls_key_file together")
        address = self.scheduler_address or ""
        if address.startswith("tls://") != all(files) and address:
            raise ValueError(
                "a tls:// scheduler_address needs tls_ca_file, tls_cert_file and tls_key_file, and the "
                "certificates need a tls:// address"
            )
        return self


def insecure_webhook(url: str, allow_insecure_http: bool) -> bool:
    """Whether a webhook URL would carry its token across the network in clear."""
    return url.startswith("http://") and not allow_insecure_http


class NotifyConfig(StrictModel):
    """Who hears about a run that failed or was rejected: a webhook, a Prefect notification block."""

    webhook_url: str | None = None  # receives a JSON POST; its path or query usually holds a token
    webhook_secret: str | None = None  # or: the name of a Prefect Secret block holding that URL
    allow_insecure_http: bool = False  # accept a plain http:// webhook (a local relay, a test)
    block: str | None = None  # a Prefect notification block's name, e.g. "slack-webhook/on-call"
    on: tuple[Literal["failed", "failed_contract", "rejected", "published", "scored"], ...] = (
        "failed",
        "failed_contract",
        "rejected",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return url

    @field_validator("block")
    @classmethod
    def _block_slug(cls, slug: str | None) -> str | None:
        if slug is not None and slug.count("/") != 1:
            raise ValueError("block must be 'block-type/block-name', e.g. 'slack-webhook/on-call'")
        return slug

    @model_validator(mode="after")
    def _one_safe_webhook(self) -> NotifyConfig:
        if self.webhook_url is not None and self.webhook_secret is not None:
            raise ValueError("give notify.webhook_url or notify.webhook_secret, not both")
        if self.webhook_url is not None and insecure_webhook(self.webhook_url, self.allow_insecure_http):
            raise ValueError(
                "notify.webhook_url is plain http://: its token would cross the network in clear; "
                "use https://, or set notify.allow_insecure_http: true for a relay you trust"
            )
        return self


class ActivationConfig(StrictModel):
    """What campaigns need besides the segments: a stable holdout (control) group per segment."""

    # share of every segment held out of campaigns; None: no holdout groups
    holdout_share: float | None = Field(None, gt=0.0, lt=1.0)
    # the key of the hash that places each customer; changing it reshuffles every group
    holdout_salt: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _salted(self) -> ActivationConfig:
        if self.holdout_share is not None and self.holdout_salt is None:
            raise ValueError("activation.holdout_share needs activation.holdout_salt")
        return self


class LineageConfig(StrictModel):
    """Where OpenLineage events of every run go (off unless a transport is set). A token for the
    endpoint comes from $SEGFLOW_LINEAGE_TOKEN or the Prefect Secret block `token_secret`."""

    transport: Literal["http", "file", "console"] | None = None
    url: str | None = None  # http: the lineage server, e.g. http://marquez:5000
    endpoint: str = "api/v1/lineage"  # http: the path events are posted to, under url
    path: Path | None = None  # file: events are appended to it, one JSON object a line
    namespace: str = Field("segflow", min_length=1)  # the jobs' namespace
    token_secret: str | None = None  # name of a Prefect Secret block holding the endpoint's token
    allow_insecure_http: bool = False  # send a token over plain http:// (a local relay, a test)
    timeout_seconds: float = Field(5.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _plain_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(check_printable(url, "url"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("lineage.url must be an http:// or https:// URL")
        if parts.username or parts.password or parts.query:
            raise ValueError(
                "lineage.url holds credentials or a query: give the server's address only, and the "
                "token through $SEGFLOW_LINEAGE_TOKEN or lineage.token_secret"
            )
        return url

    @field_validator("path")
    @classmethod
    def _safe_file(cls, path: Path | None) -> Path | None:
        return None if path is None else Path(check_output_path(str(path), "path"))

    @model_validator(mode="after")
    def _complete(self) -> LineageConfig:
        if self.transport == "http" and self.url is None:
            raise ValueError("lineage.transport http needs lineage.url")
        if self.transport == "file" and self.path is None:
            raise ValueError("lineage.transport file needs lineage.path")
        if self.token_secret and self.url and insecure_webhook(self.url, self.allow_insecure_http):
            raise ValueError(
                "lineage.url is plain http://: the token would cross the network in clear; use https://, "
                "or set lineage.allow_insecure_http: true for a relay you trust"
            )
        return self


class SegflowConfig(StrictModel):
    """Everything a run needs to know, validated before any data is read."""

    sources: SourcesConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    clustering: ClusteringConfig = Field(default_factory=ClusteringConfig)
    naming: NamingConfig = Field(default_factory=NamingConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    activation: ActivationConfig = Field(default_factory=ActivationConfig)
    lineage: LineageConfig = Field(default_factory=LineageConfig)

    @model_validator(mode="after")
    def _rfm_map_has_rfm_features(self) -> SegflowConfig:
        if self.clustering.algorithm == "rfm" and (
            self.sources.transactions is None or not self.features.rfm
        ):
            raise ValueError(
                "clustering.algorithm rfm (the RFM map) needs RFM features: a transactions source "
                "and features.rfm: true"
            )
        return self

    @model_validator(mode="after")
    def _clustering_aims_at_the_gate(self) -> SegflowConfig:
        """The search aims at what the gate accepts (segment sizes, stability, validity), unless told
        otherwise."""
        shared = (
            "min_segment_share",
            "max_segment_share",
            "stability_resamples",
            "min_stability",
            "min_silhouette",
            "min_dbcv",
        )
        for name in shared:
            if name not in self.clustering.model_fields_set:
                setattr(self.clustering, name, getattr(self.gate, name))
        return self


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """Split 'a.b.c=value' into its key path and a YAML-typed value."""
    key, sep, raw_value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects dotted.key=value, got {assignment!r}")
    shown = raw_value if len(raw_value) <= 60 else raw_value[:57] + "..."
    value = load_yaml_text(raw_value, f"--set {key}: value {shown!r}") if raw_value.strip() else None
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of a raw config dict with each dotted-key override set."""
    merged = copy.deepcopy(raw) or {}
    for assignment in overrides:
        path, value = parse_override(assignment)
        node = merged
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {'.'.join(path)}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return merged


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file with the bounded safe loader; relative paths stay as written."""
    raw = load_yaml_file(path, "config file")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    return raw


def build_config(raw: dict[str, Any], overrides: list[str] | None = None) -> SegflowConfig:
    """Validate a raw config dict (plus --set overrides) into the typed model."""
    merged = apply_overrides(raw, overrides or [])
    try:
        return SegflowConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from error


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the dotted config key and echoing the value it got."""
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"config key {key!r} is not known")
        elif problem["type"] == "missing" or "got " in problem["msg"] or isinstance(problem["input"], dict):
            # nothing to echo, the check says what it got, or the value is a section (it may hold secrets)
            lines.append(f"config key {key!r}: {problem['msg']}")
        else:
            shown = shown_value(key, problem.get("input"))
            lines.append(f"config key {key!r}: {problem['msg']} (got {shown})")
    return "invalid config:\n  " + "\n  ".join(lines)


def shown_value(key: str, value: Any) -> str:
    """A config value as an error message may echo it: connection strings without their secrets,
    secrets not at all, long values cut."""
    last = key.rsplit(".", 1)[-1].lower()
    if any(word in last for word in ("password", "secret", "token")):
        return "a value (not shown)"
    if isinstance(value, str) and last.endswith("url") and "://" in value:  # a webhook's path is its token
        return f"{value.split('://', 1)[0]}://{value.split('://', 1)[1].split('/', 1)[0]}/..."
    text = redact_uri(value) if isinstance(value, str) and "://" in value else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
