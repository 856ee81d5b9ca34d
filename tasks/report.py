"""Report: one self-contained HTML page per run, for the marketing team as much as for engineers.

Plain words first, numbers next, plots embedded as PNG data: no script, style or font is fetched,
so the page reads the same offline or as a mail attachment. Only aggregates are shown: no
customer-level values (the projection plots anonymous points).
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.clustering.registry import RFM_MAP_ALGORITHM
from segflow.explain import conditions_text
from segflow.files import write_atomically
from segflow.rfm import CELL_NAMES, RFM_MAP, cells_of
from segflow.timing import timed

PLOT_SAMPLE = 4_000
NOISE_KEY = "seg-0000"


@dataclass
class ReportInputs:
    """Everything the page shows, as aggregates and small arrays."""

    run_id: str
    as_of: date
    status: str  # published | rejected | published_override
    algorithm: str
    params: dict[str, Any]
    scores: dict[str, Any]
    k_search: list[dict[str, Any]]
    choice: list[str]  # why this algorithm and this number of segments
    gate_checks: list[dict[str, Any]]
    segments: pd.DataFrame  # segment_key, segment_name, description, size, share, features, rules (dicts)
    migration: pd.DataFrame  # rows: last publication's keys (or "new"), columns: this run's keys
    projection: np.ndarray  # 2-D coordinates of a sample of customers
    projection_keys: np.ndarray  # their segment keys
    silhouette_by_key: dict[str, float]
    dendrogram: dict[str, Any] | None
    customers: int
    quarantined: int
    # share of each segment's customers (rows, by name) in each RFM map cell (columns); empty
    # without RFM features, or when the segments are the map's cells
    rfm_map: pd.DataFrame = field(default_factory=pd.DataFrame)
    rfm_map_silhouette: float | None = None  # the map's silhouette on the clusterings' sample
    holdouts: list[dict[str, Any]] = field(default_factory=list)  # per segment: customers, holdout, share


def figure_png(figure: Any) -> str:
    """A matplotlib figure as a base64 PNG data URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def sample_rows(n_rows: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=min(size, n_rows), replace=False))


def projection_and_silhouette(
    matrix: np.ndarray, keys: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """PCA coordinates and per-segment mean silhouette on one sample of customers."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_samples

    rows = sample_rows(len(matrix), PLOT_SAMPLE, seed)
    sample, sample_keys = matrix[rows], keys[rows]
    components = min(2, sample.shape[1])
    coordinates = PCA(n_components=components, random_state=seed).fit_transform(sample)
    if components == 1:
        coordinates = np.column_stack([coordinates[:, 0], np.zeros(len(coordinates))])
    scored = sample_keys != NOISE_KEY
    silhouette: dict[str, float] = {}
    if len(set(sample_keys[scored])) > 1:
        values = silhouette_samples(sample[scored], sample_keys[scored])
        silhouette = pd.Series(values).groupby(sample_keys[scored]).mean().round(4).to_dict()
    return coordinates, sample_keys, silhouette


def plots(inputs: ReportInputs) -> dict[str, str]:
    """Every chart of the report, as data URIs."""
    import matplotlib

    # Segment names come from column names: they are drawn as written, never parsed as math text
    # (a name holding '$\foo$' stopped the run before it published).
    with matplotlib.rc_context({"text.parse_math": False}):
        return drawn_plots(inputs)


def figure(width: float, height: float, columns: int = 1) -> tuple[Any, Any]:
    """A figure and its axes, drawn by the Agg canvas: no pyplot, so no GUI backend or figure registry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawing = Figure(figsize=(width, height))
    FigureCanvasAgg(drawing)
    return drawing, drawing.subplots(1, columns)


def drawn_plots(inputs: ReportInputs) -> dict[str, str]:
    """The charts, drawn under the report's matplotlib settings."""
    from scipy.cluster.hierarchy import dendrogram

    names = dict(zip(inputs.segments["segment_key"], inputs.segments["segment_name"], strict=True))
    ordered = inputs.segments.sort_values("size", ascending=True)
    charts: dict[str, str] = {}

    drawing, axis = figure(8, 0.45 * len(ordered) + 1)
    axis.barh([names[k] for k in ordered["segment_key"]], ordered["size"], color="#4C72B0")
    axis.set_xlabel("customers")
    charts["sizes"] = figure_png(drawing)

    drawing, axis = figure(7, 5.5)
    for key in sorted(set(inputs.projection_keys)):
        points = inputs.projection[inputs.projection_keys == key]
        axis.scatter(points[:, 0], points[:, 1], s=6, alpha=0.6, label=names.get(key, key))
    axis.set_xlabel("first principal component")
    axis.set_ylabel("second principal component")
    axis.legend(fontsize=7, markerscale=2, loc="best")
    charts["projection"] = figure_png(drawing)

    if inputs.silhouette_by_key:
        keys = sorted(inputs.silhouette_by_key, key=inputs.silhouette_by_key.get)
        drawing, axis = figure(8, 0.45 * len(keys) + 1)
        axis.barh(
            [names.get(k, k) for k in keys], [inputs.silhouette_by_key[k] for k in keys], color="#55A868"
        )
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel("mean silhouette (higher: more distinct)")
        charts["silhouette"] = figure_png(drawing)

    search = [row for row in inputs.k_search if "k" in row and row.get("silhouette") is not None]
    if search:
        drawing, axes = figure(12, 3.2, columns=3)
        ks = [row["k"] for row in search]
        for axis, metric, better in zip(
            axes,
            ("silhouette", "calinski_harabasz", "davies_bouldin"),
            ("higher", "higher", "lower"),
            strict=True,
        ):
            axis.plot(ks, [row[metric] for row in search], marker="o")
            axis.axvline(inputs.params.get("k", ks[0]), color="grey", linestyle="--")
            axis.set_title(f"{metric.replace('_', '-')} ({better} is better)", fontsize=9)
            axis.set_xlabel("number of segments k")
        charts["k_search"] = figure_png(drawing)

    if inputs.dendrogram is not None:
        drawing, axis = figure(10, 4)
        dendrogram(
            np.asarray(inputs.dendrogram["linkage"]),
            truncate_mode="lastp",
            p=30,
            ax=axis,
            no_labels=True,
            color_threshold=None,
        )
        axis.set_ylabel("merge distance")
        charts["dendrogram"] = figure_png(drawing)

    if not inputs.migration.empty:
        matrix = inputs.migration
        drawing, axis = figure(1.0 * matrix.shape[1] + 3, 0.6 * matrix.shape[0] + 2)
        axis.imshow(np.log1p(matrix.to_numpy()), cmap="Blues")
        axis.set_xticks(
            range(matrix.shape[1]),
            [names.get(k, k) for k in matrix.columns],
            rotation=40,
            ha="right",
            fontsize=7,
        )
        axis.set_yticks(range(matrix.shape[0]), [names.get(k, k) for k in matrix.index], fontsize=7)
        for (i, j), value in np.ndenumerate(matrix.to_numpy()):
            axis.text(j, i, f"{value:,}", ha="center", va="center", fontsize=7)
        axis.set_xlabel("this run")
        axis.set_ylabel("last publication")
        charts["migration"] = figure_png(drawing)
    return charts


def rule_text(rule: dict[str, Any] | None) -> str:
    """A segment's membership rule in words ('recency > 365 days and orders = 1'); noise has none."""
    if rule is None:
        return "no rule: these customers fit no segment"
    return conditions_text(rule["conditions"])


def fidelity_text(rule: dict[str, Any] | None) -> str:
    """How faithful a rule is, in words."""
    if rule is None:
        return ""
    return (
        f"captures {rule['recall']:.0%} of the segment; "
        f"{rule['precision']:.0%} of the customers it captures are in the segment"
    )


def rfm_map_crosstab(labels: np.ndarray, rfm_scores: np.ndarray, names: pd.Series) -> pd.DataFrame:
    """Share of each segment's customers in each RFM map cell: rows are segment names (largest
    segment first, ties by name), columns the map's cells in map order (cells nobody is in left out)."""
    cells = pd.Categorical.from_codes(cells_of(rfm_scores), categories=list(CELL_NAMES))
    segments = names.reindex(labels).to_numpy()
    shares = pd.crosstab(segments, cells, normalize="index", dropna=False)
    shares = shares.loc[:, shares.sum() > 0]
    sizes = pd.Series(segments).value_counts().sort_index().sort_values(ascending=False, kind="stable")
    return shares.loc[sizes.index].rename_axis(index=None, columns=None)


def profile_rows(segments: pd.DataFrame) -> tuple[list[str], list[dict[str, Any]]]:
    """Median and lift of each numeric feature per segment, as table rows."""
    features = sorted({f for stats in segments["features"] for f in stats})
    rows = []
    for segment in segments.sort_values("size", ascending=False).itertuples():
        cells = {f: segment.features.get(f) for f in features}
        rows.append({"name": segment.segment_name, "key": segment.segment_key, "cells": cells})
    return features, rows


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Customer segments as of {{ i.as_of }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child, .text { text-align: left; }
.fail { color: #b00020; font-weight: bold; } .pass { color: #1b7f3b; }
.lead { font-size: 1.1em; } img { max-width: 100%; }
</style></head><body>
<h1>Customer segments as of {{ i.as_of }}</h1>
<p class="lead">{{ summary }}</p>
<h2>The segments</h2>
<p>Each segment's rule is the plainest description that picks out its customers, with how well
it does: the share of the segment it captures, and the share of those it captures who are in it.</p>
<table><tr><th>segment</th><th class="text">rule</th><th>customers</th><th>share</th>
<th class="text">what sets it apart</th></tr>
{% for s in segments %}<tr><td>{{ s.segment_name }}<br><small>{{ s.segment_key }}</small></td>
<td class="text">{{ rule_text(s.rules) }}<br><small>{{ fidelity_text(s.rules) }}</small></td>
<td>{{ "{:,}".format(s.size) }}</td><td>{{ "{:.1%}".format(s.share) }}</td>
<td class="text">{{ s.description }}</td></tr>{% endfor %}</table>
<img src="{{ charts.sizes }}" alt="segment sizes">
{% if i.holdouts %}<h2>Holdout groups</h2>
<p>Customers held out of campaigns in each segment, to measure them against (the same customers
every night while their segment stays the same).</p>
<table><tr><th>segment</th><th>customers</th><th>held out</th><th>share</th></tr>
{% for h in i.holdouts %}<tr><td>{{ h.segment_name }}<br><small>{{ h.segment_key }}</small></td>
<td>{{ "{:,}".format(h.customers) }}</td><td>{{ "{:,}".format(h.holdout) }}</td>
<td>{{ "{:.1%}".format(h.share) }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Profiles: median (and lift against the whole base)</h2>
<table><tr><th>segment</th>{% for f in features %}<th>{{ f }}</th>{% endfor %}</tr>
{% for r in profile %}<tr><td>{{ r.name }}</td>{% for f in features %}<td>
{% if r.cells[f] %}{{ "{:,.4g}".format(r.cells[f].median) }}
<small>({{ "{:.2f}".format(r.cells[f].lift) }}x)</small>{% endif %}</td>{% endfor %}</tr>{% endfor %}</table>
<h2>How the segments sit together</h2>
<p>Each point is a customer (a random sample), placed by the two directions that spread the
customers most. Segments that overlap here can still differ on other features.</p>
<img src="{{ charts.projection }}" alt="2-D projection of the segments">
{% if rfm_map %}<h2>The segments on the RFM map</h2>
<p>The classic RFM map sorts customers by their recency, frequency and spend scores (quintiles,
1 to 5) into named cells, from Champions to Lost. Each row shows how a segment's customers spread
over the cells{% if i.rfm_map_silhouette is not none %} (the map as a segmentation: silhouette
{{ "{:.3f}".format(i.rfm_map_silhouette) }} on the same sample){% endif %}.</p>
<table><tr><th>segment</th>{% for c in rfm_map_cells %}<th title="{{ cell_meanings[c] }}">{{ c }}</th>
{% endfor %}</tr>
{% for r in rfm_map %}<tr><td>{{ r.segment }}</td>{% for c in rfm_map_cells %}<td>
{{ "{:.0%}".format(r.shares[c]) if r.shares[c] >= 0.005 else "" }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endif %}
{% if charts.get('silhouette') %}<h2>How distinct each segment is</h2>
<p>Silhouette by segment: near 1, its customers are much closer to each other than to other
segments; near 0 or below, the segment blurs into its neighbours.</p>
<img src="{{ charts.silhouette }}" alt="silhouette by segment">{% endif %}
{% if charts.get('migration') %}<h2>Movement since the last publication</h2>
<p>Customers by their segment in the last publication (rows; "new": not in it) and in this one
(columns; "left": no longer in the base).</p>
<img src="{{ charts.migration }}" alt="migration matrix">{% endif %}
<h2>Quality checks (the gate)</h2>
<table><tr><th>rule</th><th>value</th><th>threshold</th><th>severity</th><th>result</th></tr>
{% for c in i.gate_checks %}<tr><td>{{ c.rule }}</td>
<td>{{ "n/a" if c.value is none else "{:.4g}".format(c.value) }}</td><td>{{ c.threshold }}</td>
<td>{{ c.severity }}</td><td class="{{ 'pass' if c.passed else 'fail' }}">{{ 'pass' if c.passed else 'FAIL' }}
</td></tr>{% endfor %}</table>
<h2>How the number of segments was chosen</h2>
<p>Algorithm <b>{{ i.algorithm }}</b> with {{ params }}. {{ validity }}.</p>
<ul>{% for reason in i.choice %}<li>{{ reason }}</li>{% endfor %}</ul>
{% if charts.get('k_search') %}<img src="{{ charts.k_search }}" alt="k search">{% endif %}
{% if charts.get('dendrogram') %}<h2>Dendrogram</h2>
<p>How the hierarchical method merged customers into segments (top levels).</p>
<img src="{{ charts.dendrogram }}" alt="dendrogram">{% endif %}
<p><small>Run {{ i.run_id }} · {{ "{:,}".format(i.customers) }} customers ·
{{ "{:,}".format(i.quarantined) }} input rows quarantined · generated by segflow</small></p>
</body></html>
"""


def summary_sentence(inputs: ReportInputs) -> str:
    n = len(inputs.segments[inputs.segments["segment_key"] != NOISE_KEY])
    largest = inputs.segments.sort_values("size", ascending=False).iloc[0]
    verdict = {
        "published": "It passed every quality check and is now the current segmentation.",
        "published_override": "It failed a quality check but was published on an explicit override.",
        "rejected": "It did not pass the quality checks, so it was NOT published: the previous "
        "segmentation stays current. Failed: "
        + "; ".join(c["message"] for c in inputs.gate_checks if not c["passed"])
        + ".",
    }[inputs.status]
    return (
        f"On {inputs.as_of}, segflow sorted {inputs.customers:,} customers into {n} segments. "
        f"The largest is \u201c{largest.segment_name}\u201d ({largest.share:.0%} of customers). {verdict}"
    )


def render_report(inputs: ReportInputs) -> str:
    import jinja2

    features, profile = profile_rows(inputs.segments)
    page = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(PAGE)
    return page.render(
        i=inputs,
        summary=summary_sentence(inputs),
        segments=inputs.segments.sort_values("size", ascending=False).to_dict("records"),
        features=features,
        profile=profile,
        charts=plots(inputs),
        params=", ".join(f"{k}={v}" for k, v in inputs.params.items()),
        validity=validity_text(inputs.scores),
        rule_text=rule_text,
        fidelity_text=fidelity_text,
        rfm_map=[{"segment": name, "shares": row.to_dict()} for name, row in inputs.rfm_map.iterrows()],
        rfm_map_cells=list(inputs.rfm_map.columns),
        cell_meanings={cell.name: cell.meaning for cell in RFM_MAP},
    )


def validity_text(scores: dict[str, Any]) -> str:
    """The scores that judged the segmentation, in words: its measure (silhouette, or DBCV for a
    density method), and its stability."""
    measure = scores.get("measure", "silhouette")
    value = scores.get(measure)
    text = f"{'DBCV' if measure == 'dbcv' else 'Silhouette'} {'n/a' if value is None else f'{value:.3f}'}"
    stability = scores.get("stability")
    return text + (
        "" if stability is None else f", stability {stability:.2f} (adjusted Rand index of refits)"
    )


def write_report(html: str, folder: Path, as_of: date, run_id: str) -> Path:
    """Write the page atomically as FOLDER/segments-<as_of>-<run_id>.html (never through a file or
    link someone planted)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"segments-{as_of.isoformat()}-{run_id}.html"
    write_atomically(path, html)
    return path


def report_inputs(
    run_id: str,
    as_of: date,
    status: str,
    segmentation: Any,
    gate_checks: list[dict[str, Any]],
    segment_profiles: pd.DataFrame,
    migration: pd.DataFrame,
    keys: dict[int, str],
    matrix: np.ndarray,
    quarantined: int,
) -> ReportInputs:
    """Gather the aggregates of a run (its segment_profiles rows, scores, gate) for the page."""
    segments = segment_profiles[["segment_key", "segment_name", "description", "size", "share"]].assign(
        features=[json.loads(f) for f in segment_profiles["features"]],
        rules=[json.loads(r) if isinstance(r, str) else None for r in segment_profiles["rules"]],
    )
    row_keys = pd.Series(segmentation.labels).map(keys).to_numpy()
    projection, projection_keys, silhouette = projection_and_silhouette(matrix, row_keys, seed=0)
    rfm_map, baseline = pd.DataFrame(), None
    if segmentation.rfm_scores is not None and segmentation.algorithm != RFM_MAP_ALGORITHM:
        names = pd.Series(keys).map(dict(zip(segments["segment_key"], segments["segment_name"], strict=True)))
        rfm_map = rfm_map_crosstab(segmentation.labels, segmentation.rfm_scores, names)
        baseline = next(row["scores"]["silhouette"] for row in segmentation.leaderboard if row["baseline"])
    return ReportInputs(
        run_id=run_id,
        as_of=as_of,
        status=status,
        algorithm=segmentation.algorithm,
        params=segmentation.params,
        scores=segmentation.scores,
        k_search=segmentation.k_search,
        choice=segmentation.choice,
        gate_checks=gate_checks,
        segments=segments,
        migration=migration,
        projection=projection,
        projection_keys=projection_keys,
        silhouette_by_key=silhouette,
        dendrogram=segmentation.dendrogram,
        customers=int(segments["size"].sum()),
        quarantined=quarantined,
        rfm_map=rfm_map,
        rfm_map_silhouette=baseline,
    )


def markdown_text(text: str) -> str:
    """Text (segment names come from column names) shown literally in a Markdown table cell."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", str(text)).replace("\n", " ")


def fidelity_cells(rule: dict[str, Any] | None) -> str:
    """A rule's recall and precision as two Markdown table cells (empty where there is no rule)."""
    return " | " if rule is None else f"{rule['recall']:.0%} | {rule['precision']:.0%}"


def run_summary_markdown(inputs: ReportInputs, report: Path | None) -> str:
    """The on-call summary of a run: the verdict and its reasons, the segments, the k search."""
    verdict = {
        "published": "published",
        "published_override": "published on override",
        "rejected": "rejected by the gate",
    }[inputs.status]
    failed = [f"{c['message']} ({c['severity']})" for c in inputs.gate_checks if not c["passed"]]
    lines = [
        f"# Segmentation {inputs.as_of}: {verdict}",
        "",
        f"Run `{inputs.run_id}`, {inputs.algorithm} {inputs.params}, {inputs.customers:,} customers, "
        f"{inputs.quarantined:,} quarantined rows.",
        "",
        f"Report: [{report.name}]({report.resolve().as_uri()})"
        if report
        else "Report: not written (publish.reports)",
        "",
        "Gate: " + ("; ".join(failed) or "all checks passed"),
        "",
        "| segment | key | customers | share | rule | recall | precision |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[
            f"| {markdown_text(s.segment_name)} | {s.segment_key} | {s.size:,} | {s.share:.1%} "
            f"| {markdown_text(rule_text(s.rules))} | {fidelity_cells(s.rules)} |"
            for s in inputs.segments.sort_values("size", ascending=False).itertuples()
        ],
    ]
    if inputs.holdouts:
        lines += ["", "| segment | customers | held out | share |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {markdown_text(h['segment_name'])} | {h['customers']:,} | {h['holdout']:,} "
            f"| {h['share']:.1%} |"
            for h in inputs.holdouts
        ]
    lines += ["", "Why: " + " ".join(f"{reason}." for reason in inputs.choice)]
    searched = [row for row in inputs.k_search if "k" in row and row.get("silhouette") is not None]
    if searched:
        lines += ["", "| k | silhouette | stability | within bounds |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {row['k']} | {row['silhouette']:.3f} | "
            + ("-" if row.get("stability") is None else f"{row['stability']:.2f}")
            + f" | {'yes' if row.get('within_bounds', True) else 'no'} |"
            for row in searched
        ]
    return "\n".join(lines)


@task(name="report", cache_policy=NO_CACHE)
@timed
def report_task(
    run_id: str,
    as_of: date,
    status: str,
    segmentation: Any,
    gate_checks: list[dict[str, Any]],
    segment_profiles: pd.DataFrame,
    migration: pd.DataFrame,
    keys: dict[int, str],
    matrix: np.ndarray,
    quarantined: int,
    folder: Path | None,
    holdouts: list[dict[str, Any]] | None = None,
) -> Path | None:
    """Write the HTML report (when a folder is configured) and the run's summary artifact."""
    inputs = report_inputs(
        run_id,
        as_of,
        status,
        segmentation,
        gate_checks,
        segment_profiles,
        migration,
        keys,
        matrix,
        quarantined,
    )
    inputs.holdouts = holdouts or []
    path = None if folder is None else write_report(render_report(inputs), folder, as_of, run_id)
    create_markdown_artifact(
        markdown=run_summary_markdown(inputs, path),
        key="segmentation-report",
        description=f"segflow run {run_id}",
    )
    get_run_logger().info("report: %s", path or "not written (no publish.reports folder)")
    return path
