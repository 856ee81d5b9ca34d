"""Profile: describe each segment in numbers and in a short, true and distinct name a marketer can use
(the naming rules are `segflow.naming`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.config import NamingConfig
from segflow.explain import segment_rules
from segflow.naming import (
    MEDIAN_WORDS,
    Base,
    SegmentFacts,
    distinct_names,
    median_text,
    phrase,
    segment_facts,
)
from segflow.tables import NOISE_LABEL, NOISE_NAME
from segflow.timing import timed

DEFAULT_NAMING = NamingConfig()


def feature_statistics(readable: pd.DataFrame, labels: np.ndarray, numeric: list[str]) -> pd.DataFrame:
    """Per segment and numeric feature: median, mean and lift of the mean over the whole base."""
    frame = readable[numeric].assign(_segment=labels)
    grouped = frame.groupby("_segment")
    medians = grouped.median().stack().rename("median")
    means = grouped.mean().stack().rename("mean")
    overall = readable[numeric].mean()
    stats = pd.concat([medians, means], axis=1).reset_index()
    stats.columns = ["label", "feature", "median", "mean"]
    base = stats["feature"].map(overall).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats["lift"] = np.where(base != 0, stats["mean"].to_numpy(dtype=float) / base, np.nan)
    return stats


def top_categories(readable: pd.DataFrame, labels: np.ndarray, categorical: list[str]) -> dict:
    """Per segment and category column: the three most common values and their shares of the
    segment's rows with a value (counted on codes: a pandas value_counts per segment took 2x as long)."""
    result: dict[int, dict[str, dict[str, float]]] = {}
    segments, segment_of_row = np.unique(labels, return_inverse=True)
    for column in categorical:
        codes, values = pd.factorize(readable[column])
        known = codes >= 0
        counts = np.bincount(
            segment_of_row[known] * len(values) + codes[known], minlength=len(segments) * len(values)
        ).reshape(len(segments), len(values))
        for counted, label in zip(counts, segments, strict=True):
            top = np.argsort(-counted, kind="stable")[:3]
            shares = {str(values[i]): round(float(counted[i] / counted.sum()), 4) for i in top if counted[i]}
            if shares:
                result.setdefault(int(label), {})[column] = shares
    return result


def describe(size: int, share: float, stats: dict[str, dict[str, float]]) -> str:
    """The segment's size and medians, in the words of its features (the name is told apart)."""
    never_bought = stats.get("frequency", {}).get("median") == 0
    shown = [f for f in stats if not (never_bought and f in MEDIAN_WORDS)]  # no orders: no order facts
    parts = (["no orders"] if never_bought else []) + [median_text(f, stats[f]["median"]) for f in shown]
    medians = f" Medians: {'; '.join(parts)}." if parts else ""
    return f"{size:,} customers ({share:.1%}).{medians}"


def profile_segments(
    readable: pd.DataFrame,
    labels: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    rules: NamingConfig = DEFAULT_NAMING,
    defined_names: dict[int, str] | None = None,
) -> pd.DataFrame:
    """One row per segment label: size, share, feature statistics, top categories, the facts its
    name states, a unique name, a description and a membership rule. `defined_names`: the names an
    algorithm gives its segments (the RFM map's cells), used as they are."""
    stats = feature_statistics(readable, labels, numeric)
    categories = top_categories(readable, labels, categorical)
    base = Base.of(readable, numeric, categorical)
    sizes = pd.Series(labels).value_counts().sort_index()
    rows = []
    for label, size in sizes.items():
        segment_stats = {
            r.feature: {"median": float(r.median), "mean": float(r.mean), "lift": float(r.lift)}
            for r in stats[stats["label"] == label].itertuples()
        }
        shares = {column: pd.Series(values) for column, values in categories.get(int(label), {}).items()}
        medians = {feature: summary["median"] for feature, summary in segment_stats.items()}
        facts = SegmentFacts() if label == NOISE_LABEL else segment_facts(medians, shares, base, rules)
        defined = bool(defined_names) and label in defined_names
        rows.append(
            {
                "label": int(label),
                "size": int(size),
                "share": float(size / len(labels)),
                "name": NOISE_NAME
                if label == NOISE_LABEL
                else defined_names[label]
                if defined
                else phrase(facts),
                "name_defined": defined,  # the algorithm's name for it: publishing never keeps an older one
                "facts": facts.as_dict(),
                "features": segment_stats,
                "top_categories": categories.get(int(label), {}),
                "medians": medians,
                "modes": {
                    column: (values.index[0], float(values.iloc[0])) for column, values in shares.items()
                },
            }
        )
    names = distinct_names([row for row in rows if row["label"] != NOISE_LABEL])
    for row in rows:
        row["name"] = names.get(row["label"], row["name"])
    profiles = pd.DataFrame(rows).drop(columns=["medians", "modes"])
    profiles["description"] = [describe(r.size, r.share, r.features) for r in profiles.itertuples()]
    return with_rules(profiles, readable, labels, numeric, categorical)


def with_rules(
    profiles: pd.DataFrame,
    readable: pd.DataFrame,
    labels: np.ndarray,
    numeric: list[str],
    categorical: list[str],
) -> pd.DataFrame:
    """Profiles with each segment's membership rule and its fidelity (noise: None). The rules are
    learned and measured on the customers profiled: in Dask mode that is the fit sample, the only
    customers whose readable features are at hand (and a sample is all the trees need)."""
    rules = segment_rules(readable, labels, numeric, categorical)
    return profiles.assign(
        rules=[rules[label].as_record() if label in rules else None for label in profiles["label"]]
    )


def with_population_sizes(profiles: pd.DataFrame, population: np.ndarray) -> pd.DataFrame:
    """Profiles measured on the fitted customers, with each segment's size and share over every
    customer (the same where the fit saw every customer)."""
    sizes = pd.Series(population).value_counts()
    profiles = profiles.copy()
    profiles["size"] = [int(sizes.get(label, 0)) for label in profiles["label"]]
    profiles["share"] = profiles["size"] / len(population)
    profiles["description"] = [describe(r.size, r.share, r.features) for r in profiles.itertuples()]
    return profiles


@task(name="profile", cache_policy=NO_CACHE)
@timed
def profile_task(
    readable: pd.DataFrame,
    labels: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    population: np.ndarray,
    rules: NamingConfig,
    defined_names: dict[int, str] | None = None,
) -> pd.DataFrame:
    """Profiles of the fitted customers' segments, sized over the whole population."""
    profiles = profile_segments(readable, labels, numeric, categorical, rules, defined_names)
    profiles = with_population_sizes(profiles, population)
    logger = get_run_logger()
    for row in profiles.itertuples():
        logger.info(
            "profile: segment %d %r: %d customers (%.1f%%)", row.label, row.name, row.size, 100 * row.share
        )
    return profiles
