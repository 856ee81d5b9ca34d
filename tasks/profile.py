"""Profile: describe each segment in numbers and in a short name a marketer can use."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from segflow.tables import NOISE_LABEL, NOISE_NAME

RFM_BASE_MEDIANS = ("recency_days", "tenure_days")  # what rfm_name compares a segment's medians with


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


def rfm_name(stats: dict[str, dict[str, float]], overall_median: dict[str, float]) -> str | None:
    """A name like 'Recent frequent high spenders' from recency, frequency and spend."""
    if not {"recency_days", "frequency", "monetary"} <= stats.keys():
        return None
    frequency = stats["frequency"]["median"]
    if frequency == 0:
        return "Never purchased"
    recency = stats["recency_days"]["median"]
    recency_ratio = recency / max(overall_median["recency_days"], 1.0)
    tenure = stats.get("tenure_days", {}).get("median")
    purchase_cycle = tenure / frequency if tenure is not None else None
    if tenure is not None and tenure <= 0.25 * overall_median["tenure_days"]:
        word = "New"
    elif purchase_cycle is not None and frequency > 1 and recency > 3 * purchase_cycle:
        word = "At-risk"  # bought regularly, then stopped for three of their usual intervals
    elif recency_ratio <= 0.5:
        word = "Recent"
    elif recency_ratio >= 2.5:
        word = "Lapsed"
    elif recency_ratio >= 1.4:
        word = "Cooling"
    else:
        word = "Active"
    if frequency <= 1:
        habit = "one-time"
    elif stats["frequency"]["lift"] >= 1.4:
        habit = "frequent"
    else:
        habit = "occasional"
    spend_lift = stats["monetary"]["lift"]
    basket_lift = stats.get("avg_order_value", {}).get("lift", 1.0)
    if spend_lift >= 1.5 or basket_lift >= 1.5:
        value = "high spenders"
    elif habit == "frequent" and basket_lift <= 0.6:
        value = "bargain hunters"
    else:
        value = "buyers"
    return f"{word} {habit} {value}"


def lift_name(stats: dict[str, dict[str, float]]) -> str:
    """A name from the two features whose mean differs most from the base, e.g. 'High age, low visits'."""
    lifts = {f: s["lift"] for f, s in stats.items() if np.isfinite(s["lift"]) and s["lift"] > 0}
    ranked = sorted(lifts, key=lambda f: abs(np.log(lifts[f])), reverse=True)[:2]
    if not ranked:
        return "Typical customers"
    words = [f"{'high' if lifts[f] >= 1 else 'low'} {f.replace('_', ' ')}" for f in ranked]
    return ", ".join(words).capitalize()


def describe(name: str, size: int, share: float, stats: dict[str, dict[str, float]]) -> str:
    """One sentence with the size and the features that set the segment apart."""
    notable = sorted(
        (f for f, s in stats.items() if np.isfinite(s["lift"]) and s["lift"] > 0),
        key=lambda f: abs(np.log(stats[f]["lift"])),
        reverse=True,
    )[:3]
    parts = [
        f"{f.replace('_', ' ')} median {stats[f]['median']:,.4g} ({stats[f]['lift']:.1f}x the average)"
        for f in notable
    ]
    return f"{name}: {size:,} customers ({share:.1%}). " + "; ".join(parts) + "."


def profile_segments(
    readable: pd.DataFrame,
    labels: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    defined_names: dict[int, str] | None = None,
) -> pd.DataFrame:
    """One row per segment label: size, share, feature statistics, top categories, name, description.
    `defined_names`: the names an algorithm gives its segments (the RFM map's cells), used as they are."""
    stats = feature_statistics(readable, labels, numeric)
    categories = top_categories(readable, labels, categorical)
    overall_median = readable[[c for c in RFM_BASE_MEDIANS if c in numeric]].median().to_dict()
    sizes = pd.Series(labels).value_counts().sort_index()
    rows = []
    for label, size in sizes.items():
        segment_stats = {
            r.feature: {"median": float(r.median), "mean": float(r.mean), "lift": float(r.lift)}
            for r in stats[stats["label"] == label].itertuples()
        }
        defined = bool(defined_names) and label in defined_names
        if label == NOISE_LABEL:
            name = NOISE_NAME
        elif defined:
            name = defined_names[label]
        else:
            name = rfm_name(segment_stats, overall_median) or lift_name(segment_stats)
        share = size / len(labels)
        rows.append(
            {
                "label": int(label),
                "size": int(size),
                "share": float(share),
                "name": name,
                "name_defined": defined,  # the algorithm's name for it: publishing never keeps an older one
                "features": segment_stats,
                "top_categories": categories.get(int(label), {}),
            }
        )
    profiles = pd.DataFrame(rows)
    profiles["name"] = distinct_names(profiles)
    profiles["description"] = [describe(r.name, r.size, r.share, r.features) for r in profiles.itertuples()]
    return profiles


def distinct_names(profiles: pd.DataFrame) -> list[str]:
    """Keep names unique in a run: repeated names get the feature that sets each apart."""
    names = list(profiles["name"])
    for name in {n for n in names if names.count(n) > 1}:
        for index in [i for i, n in enumerate(names) if n == name]:
            names[index] = f"{name} ({lift_name(profiles['features'].iloc[index]).lower()})"
    for name in {n for n in names if names.count(n) > 1}:
        for rank, index in enumerate([i for i, n in enumerate(names) if n == name], start=1):
            names[index] = f"{name} #{rank}"
    return names


def with_population_sizes(profiles: pd.DataFrame, population: np.ndarray) -> pd.DataFrame:
    """Profiles measured on the fitted customers, with each segment's size and share over every
    customer (the same where the fit saw every customer)."""
    sizes = pd.Series(population).value_counts()
    profiles = profiles.copy()
    profiles["size"] = [int(sizes.get(label, 0)) for label in profiles["label"]]
    profiles["share"] = profiles["size"] / len(population)
    profiles["description"] = [describe(r.name, r.size, r.share, r.features) for r in profiles.itertuples()]
    return profiles


@task(name="profile", cache_policy=NO_CACHE)
def profile_task(
    readable: pd.DataFrame,
    labels: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    population: np.ndarray,
    defined_names: dict[int, str] | None = None,
) -> pd.DataFrame:
    """Profiles of the fitted customers' segments, sized over the whole population."""
    profiles = with_population_sizes(
        profile_segments(readable, labels, numeric, categorical, defined_names), population
    )
    logger = get_run_logger()
    for row in profiles.itertuples():
        logger.info(
            "profile: segment %d %r: %d customers (%.1f%%)", row.label, row.name, row.size, 100 * row.share
        )
    return profiles
