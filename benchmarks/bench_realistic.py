"""What the default segmentation makes of realistic data (on demand, not CI): a Markdown report.

    .venv/bin/python benchmarks/bench_realistic.py [--retail-customers 30000] [--telecom-customers 7043]
        [--set clustering.algorithm=kmeans ...]

Writes the realistic retail and telecom tables of segflow.synthetic once under benchmarks/data/,
then runs the flow's stage functions on each with the dataset's config and segflow's defaults:
ingest, features, preprocess, scale, cluster, stability, gate (without drift: no earlier
publication) and profiles. It prints the chosen algorithm and k, the candidates' scores, the
gate's verdict and, per segment, its share, name, feature medians, top categories and membership
rule with its recall and precision.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from segflow.config import build_config
from segflow.rfm import rfm_positions
from segflow.synthetic import (
    RETAIL_END,
    ensure_retail_data,
    ensure_telecom_data,
    retail_config,
    telecom_config,
)
from segflow.tasks.cluster import fit_segmentation
from segflow.tasks.features import build_customer_features, fit_features
from segflow.tasks.ingest import load_source
from segflow.tasks.preprocess import prepare_features
from segflow.tasks.profile import profile_segments
from segflow.tasks.report import rule_text
from segflow.tasks.scale import fit_scaling
from segflow.tasks.validate import evaluate_gate

DATA = Path(__file__).parent / "data"
OUTPUT = Path(__file__).parent / "out" / "realistic"


def segment(raw: dict[str, Any], overrides: list[str], as_of: date) -> dict[str, Any]:
    """The default path of a run, stage by stage, without publishing."""
    config = build_config(raw, overrides)
    started = time.perf_counter()
    sources = {name: load_source(name, source) for name, source in config.sources.configured()}
    features = fit_features(
        build_customer_features(sources, config.sources, as_of, config.features.rfm), config.sources
    )
    prepared = prepare_features(features.table, config.features, config.preprocess, features.rfm_columns)
    scaling, matrix = fit_scaling(
        prepared.model_input, config.preprocess.scaler, prepared.categorical_columns
    )
    segmentation = fit_segmentation(
        matrix, config.clustering, rfm_positions(scaling.columns, features.rfm_columns)
    )
    decision = evaluate_gate(
        segmentation.labels,
        segmentation.scores,
        {},
        config.gate,
        config.clustering.min_segments,
        segmentation.family,
    )
    profiles = profile_segments(
        prepared.readable,
        segmentation.labels,
        prepared.numeric_columns,
        prepared.categorical_columns,
        segmentation.names,
    )
    return {
        "seconds": time.perf_counter() - started,
        "customers": len(prepared.customer_ids),
        "model_columns": prepared.model_input.shape[1],
        "log1p": prepared.recipe["log1p_columns"],
        "segmentation": segmentation,
        "stability": segmentation.scores["stability"],
        "decision": decision,
        "profiles": profiles.sort_values("share", ascending=False),
        "numeric": prepared.numeric_columns,
        "overall": prepared.readable[prepared.numeric_columns].median(),
        "mean": prepared.readable[prepared.numeric_columns].mean(),
    }


def report(title: str, result: dict[str, Any]) -> str:
    """The result of one dataset as Markdown."""
    segmentation, decision = result["segmentation"], result["decision"]
    failed = [check.rule for check in decision.checks if not check.passed and check.severity == "critical"]
    lines = [
        f"## {title}",
        "",
        f"{result['customers']:,} customers, {result['model_columns']} model columns "
        f"(log1p on {', '.join(result['log1p']) or 'none'}), {result['seconds']:.1f} s.",
        f"Chosen: **{segmentation.algorithm}, {segmentation.n_segments} segments** "
        f"({segmentation.params}); silhouette {segmentation.scores['silhouette']:.3f}, "
        f"stability {result['stability']:.3f}; gate: "
        + ("passes" if not failed else f"**rejects** ({', '.join(failed)})"),
        "",
        "| candidate | params | segments | silhouette | largest share | noise share | selected |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in segmentation.leaderboard:
        sizes, silhouette = row["segment_sizes"], row["scores"]["silhouette"]
        selected = "yes" if row["selected"] else "baseline" if row["baseline"] else ""
        lines.append(
            f"| {row['algorithm']} | {row['params']} | {len(sizes)} "
            f"| {'-' if silhouette is None else f'{silhouette:.3f}'} | {max(sizes) / sum(sizes):.1%} "
            f"| {row['noise_share']:.1%} | {selected} |"
        )
    numeric = result["numeric"]
    lines += [
        "",
        "| segment | share | "
        + " | ".join(f"{c} median (mean)" for c in numeric)
        + " | top categories | rule (recall, precision) |",
        "|---|---:|" + "---:|" * len(numeric) + "---|---|",
        "| (everyone) | 100% | "
        + " | ".join(f"{result['overall'][c]:,.4g} ({result['mean'][c]:,.4g})" for c in numeric)
        + " | | |",
    ]
    for row in result["profiles"].itertuples():
        medians = " | ".join(
            f"{row.features[c]['median']:,.4g} ({row.features[c]['mean']:,.4g})" for c in numeric
        )
        categories = "; ".join(
            f"{column}: " + ", ".join(f"{value} {share:.0%}" for value, share in list(shares.items())[:2])
            for column, shares in row.top_categories.items()
        )
        fidelity = f" ({row.rules['recall']:.0%}, {row.rules['precision']:.0%})" if row.rules else ""
        rule = rule_text(row.rules) + fidelity
        lines.append(f"| {row.name} | {row.share:.1%} | {medians} | {categories} | {rule} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retail-customers", type=int, default=30_000)
    parser.add_argument("--telecom-customers", type=int, default=7_043)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override")
    arguments = parser.parse_args()
    datasets: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (
            f"Retail, {arguments.retail_customers:,} customers",
            lambda: retail_config(
                OUTPUT, ensure_retail_data(DATA / "retail", n_customers=arguments.retail_customers)
            ),
        ),
        (
            f"Telecom, {arguments.telecom_customers:,} customers",
            lambda: telecom_config(
                OUTPUT, ensure_telecom_data(DATA / "telecom", n_customers=arguments.telecom_customers)
            ),
        ),
    ]
    pd.set_option("display.width", 200)
    for title, raw in datasets:
        print(report(title, segment(raw(), arguments.overrides, RETAIL_END)))


if __name__ == "__main__":
    main()
