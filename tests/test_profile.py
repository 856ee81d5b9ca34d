"""Segment profiles and names derived from them."""

import numpy as np
import pandas as pd

from segflow.tables import NOISE_LABEL, NOISE_NAME
from segflow.tasks.profile import profile_segments, top_categories, with_population_sizes


def test_profiles_name_rfm_segments_and_stay_unique():
    rng = np.random.default_rng(0)
    groups = {  # size, recency_days, frequency, monetary, avg_order_value, tenure_days
        "champions": (300, 5, 40, 8000, 200, 600),
        "at_risk": (150, 300, 9, 1000, 110, 650),
        "lapsed": (150, 600, 1, 40, 40, 700),
        "new": (200, 10, 1, 70, 70, 20),
        "never": (50, 700, 0, 0, 0, 700),
        "regulars": (300, 30, 10, 900, 90, 500),
    }
    frames = []
    for label, (n, recency, frequency, monetary, basket, tenure) in enumerate(groups.values()):
        frames.append(
            pd.DataFrame(
                {
                    "recency_days": rng.normal(recency, 2, n).clip(0),
                    "frequency": np.full(n, frequency),
                    "monetary": rng.normal(monetary, 5, n).clip(0),
                    "avg_order_value": np.full(n, basket),
                    "tenure_days": rng.normal(tenure, 2, n).clip(0),
                    "channel": rng.choice(["web", "app"], n),
                    "label": label,
                }
            )
        )
    readable = pd.concat(frames, ignore_index=True)
    labels = readable.pop("label").to_numpy().copy()
    labels[:5] = -1
    numeric = ["recency_days", "frequency", "monetary", "avg_order_value", "tenure_days"]
    profiles = profile_segments(readable, labels, numeric, ["channel"]).set_index("label")

    assert profiles.loc[-1, "name"] == NOISE_NAME
    assert profiles.loc[0, "name"] == "Active frequent high-spend buyers"
    assert profiles.loc[1, "name"] == "Lapsing repeat buyers"  # 300 days, 9 orders
    assert profiles.loc[2, "name"] == "Lapsed one-time low-spend buyers"
    assert profiles.loc[3, "name"] == "New one-time buyers"
    assert profiles.loc[4, "name"] == "Never purchased"
    assert profiles.loc[5, "name"] == "Active repeat buyers"
    assert profiles.loc[2, "description"] == (
        "150 customers (13.0%). Medians: last order 600 days ago; 1 order; spend 40.2; basket 40; "
        "first order 699 days ago."
    )
    assert profiles.loc[4, "description"].endswith("Medians: no orders.")
    assert profiles["name"].is_unique
    assert profiles["size"].sum() == len(labels)
    assert profiles.loc[0, "features"]["frequency"]["median"] == 40
    assert set(profiles.loc[0, "top_categories"]["channel"]) <= {"web", "app"}


def test_top_categories_are_the_three_most_common_values_among_a_segments_known_values():
    readable = pd.DataFrame(
        {"channel": pd.Series(["web"] * 5 + ["app"] * 3 + ["shop", "fax", None, None], dtype="str")}
    )
    labels = np.array([0] * 12)
    labels[-1] = -1  # a noise row, with a missing channel
    readable.loc[11, "channel"] = "web"
    assert top_categories(readable, labels, ["channel"]) == {
        0: {"channel": {"web": 0.5, "app": 0.3, "shop": 0.1}},  # of the 10 rows with a channel
        -1: {"channel": {"web": 1.0}},
    }


def test_profiles_of_a_fit_sample_are_sized_over_the_whole_population():
    """Dask mode profiles the fit sample; sizes, shares and descriptions count every customer."""
    sample = pd.DataFrame({"spend": [1.0, 2.0, 3.0, 50.0, 60.0, 70.0]})
    sample_labels = np.array([0, 0, 0, 1, 1, NOISE_LABEL])
    population = np.array([0] * 700 + [1] * 250 + [NOISE_LABEL] * 50)
    profiles = with_population_sizes(profile_segments(sample, sample_labels, ["spend"], []), population)
    sized = profiles.set_index("label")
    assert sized["size"].to_dict() == {NOISE_LABEL: 50, 0: 700, 1: 250}
    assert sized["share"].to_dict() == {NOISE_LABEL: 0.05, 0: 0.7, 1: 0.25}
    assert sized.loc[0, "features"]["spend"]["median"] == 2.0  # the statistics stay the sample's
    assert "700 customers (70.0%)" in sized.loc[0, "description"]
    same = with_population_sizes(profile_segments(sample, sample_labels, ["spend"], []), sample_labels)
    assert same["size"].tolist() == profile_segments(sample, sample_labels, ["spend"], [])["size"].tolist()
