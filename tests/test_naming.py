"""Segment names: true to the medians on any base, distinct without counters, kept while true."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from segflow.config import NamingConfig
from segflow.naming import Base, SegmentFacts, column_words, contradictions, distinct_names, phrase
from segflow.tables import NOISE_LABEL
from segflow.tasks.profile import profile_segments
from segflow.tasks.publish import segment_names

RFM = ["recency_days", "frequency", "monetary", "tenure_days", "avg_order_value"]


@st.composite
def customer_bases(draw):
    """A base of customers as real shops have them, in random proportions: most buy once, recency has
    a long tail (some bases have mostly lapsed), spend is skewed, some never bought, a category
    that may or may not follow behaviour; and a segmentation of it of 2-8 segments."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(200, 1500))
    one_time = draw(st.floats(0.3, 0.9))
    lapsed_base = draw(st.floats(30, 900))  # where the base's recency sits: active shop or a dying one
    frequency = np.where(rng.random(n) < one_time, 1, 2 + rng.geometric(draw(st.floats(0.05, 0.6)), n))
    frequency[rng.random(n) < draw(st.floats(0.0, 0.15))] = 0
    recency = rng.exponential(lapsed_base, n).round()
    tenure = recency + rng.exponential(300, n).round() * (frequency > 1)
    basket = rng.gamma(2.0, draw(st.floats(10, 200)) / 2.0, n)
    table = pd.DataFrame(
        {
            "recency_days": recency,
            "frequency": frequency.astype(float),
            "monetary": basket * frequency,
            "tenure_days": tenure,
            "avg_order_value": np.where(frequency > 0, basket, 0.0),
            "visits": rng.poisson(draw(st.floats(0.5, 30)), n).astype(float),
            "channel": rng.choice(["web", "store", "app", "marketplace"], n),
        }
    )
    never = frequency == 0
    table.loc[never, ["recency_days", "tenure_days"]] = table["tenure_days"].max() + 1
    k = draw(st.integers(2, 8))
    by = draw(st.sampled_from(["recency_days", "frequency", "monetary", "visits", "random"]))
    if by == "random":
        labels = rng.integers(0, k, n)
    else:
        ranks = table[by].rank(method="first").to_numpy()
        labels = np.minimum((ranks - 1) * k // n, k - 1).astype(np.int64)
    if draw(st.booleans()):  # a segment of one channel: its name should say so
        table.loc[labels == 0, "channel"] = "marketplace"
    labels[rng.random(n) < draw(st.floats(0.0, 0.1))] = NOISE_LABEL
    return table, labels


@settings(max_examples=60, deadline=None)
@given(customer_bases(), st.integers(30, 120), st.integers(200, 500))
def test_no_name_contradicts_its_segments_medians(case, active_days, lapsing_days):
    readable, labels = case
    rules = NamingConfig(active_days=active_days, lapsing_days=lapsing_days)
    numeric = [*RFM, "visits"]
    profiles = profile_segments(readable, labels, numeric, ["channel"], rules)
    base = Base.of(readable, numeric, ["channel"])
    named = profiles[profiles["label"] != NOISE_LABEL]
    assert named["name"].is_unique
    assert not named["name"].str.contains("#").any()
    for row in named.itertuples():
        members = readable[labels == row.label]
        medians = members[numeric].median().to_dict()
        shares = {"channel": members["channel"].value_counts(normalize=True)}
        facts = SegmentFacts(**row.facts)
        assert contradictions(facts, medians, shares, base, rules) == [], (row.name, medians)
        # a category that holds 80% of the segment and at most 60% of the base is named
        top, share = shares["channel"].index[0], shares["channel"].iloc[0]
        if share >= rules.dominant_share and base.category_shares["channel"][top] <= rules.base_share:
            assert facts.categories.get("channel") == top and top in row.name


def test_recency_words_come_from_absolute_windows_not_from_the_base():
    """On a base that has mostly lapsed, lapsed customers read as lapsed, however they compare."""
    rng = np.random.default_rng(0)
    n = 1000
    readable = pd.DataFrame(
        {
            "recency_days": np.r_[rng.normal(500, 20, 700), rng.normal(900, 20, 300)],
            "frequency": np.ones(n),
            "monetary": rng.gamma(2, 20, n),
            "tenure_days": np.r_[rng.normal(520, 20, 700), rng.normal(920, 20, 300)],
        }
    )
    labels = np.r_[np.zeros(700, dtype=np.int64), np.ones(300, dtype=np.int64)]
    profiles = profile_segments(readable, labels, list(readable.columns), []).set_index("label")
    assert profiles.loc[0, "name"].startswith("Lapsed one-time")  # median 500 days: not "Active"
    assert profiles.loc[1, "name"].startswith("Lapsed one-time")
    assert profiles["name"].is_unique  # told apart by what differs: the last order
    assert profiles.loc[0, "name"] == "Lapsed one-time buyers, last order 500 days ago"
    assert profiles.loc[1, "name"].startswith("Lapsed one-time buyers, last order 8")
    windows = NamingConfig(active_days=90, lapsing_days=600)
    relaxed = profile_segments(readable, labels, list(readable.columns), [], windows).set_index("label")
    assert relaxed.loc[0, "name"].startswith("Lapsing") and relaxed.loc[1, "name"].startswith("Lapsed")


def test_a_dominant_category_is_named_a_common_one_is_not():
    n = 1000
    readable = pd.DataFrame(
        {
            "tenure": np.r_[np.full(400, 3.0), np.full(600, 40.0)],
            "contract": ["Month-to-month"] * 390
            + ["One year"] * 10
            + ["Two year"] * 450
            + ["Month-to-month"] * 150,
            "paperless_billing": ["Yes"] * n,
        }
    )
    labels = np.r_[np.zeros(400, dtype=np.int64), np.ones(600, dtype=np.int64)]
    profiles = profile_segments(readable, labels, ["tenure"], ["contract", "paperless_billing"]).set_index(
        "label"
    )
    # 97.5% of segment 0, 54% of the base: named; everyone is paperless: never a fact of one segment
    assert profiles.loc[0, "name"] == "Month-to-month customers with low tenure"
    assert profiles.loc[1, "name"] == "Customers with high tenure"  # two year: 75% of it, not 80%
    common = readable.assign(
        contract=["Month-to-month"] * 400 + ["Two year"] * 150 + ["Month-to-month"] * 450
    )
    shared = profile_segments(common, labels, ["tenure"], ["contract"]).set_index("label")
    assert shared.loc[0, "name"] == "Customers with low tenure"  # 100% of it, but 85% of the base


def segment(label: int, name: str, medians: dict, modes: dict | None = None, share: float = 0.25) -> dict:
    return {"label": label, "name": name, "medians": medians, "modes": modes or {}, "share": share}


def test_names_are_made_distinct_by_facts_never_by_counters():
    by_channel = distinct_names(
        [
            segment(0, "Lapsed one-time buyers", {"monetary": 40.0}, {"channel": ("web", 0.7)}),
            segment(1, "Lapsed one-time buyers", {"monetary": 41.0}, {"channel": ("store", 0.6)}),
            segment(2, "Active repeat buyers", {"monetary": 400.0}),
        ]
    )
    assert by_channel == {
        0: "Lapsed one-time buyers, web",
        1: "Lapsed one-time buyers, store",
        2: "Active repeat buyers",
    }
    by_number = distinct_names(
        [
            segment(0, "Lapsed one-time buyers", {"recency_days": 400.0, "monetary": 40.0}),
            segment(1, "Lapsed one-time buyers", {"recency_days": 1100.0, "monetary": 42.0}),
        ]
    )
    assert by_number == {
        0: "Lapsed one-time buyers, last order 400 days ago",
        1: "Lapsed one-time buyers, last order 1,100 days ago",
    }
    by_spend = distinct_names(
        [
            segment(0, "Lapsing repeat buyers", {"monetary": 1074.0}),
            segment(1, "Lapsing repeat buyers", {"monetary": 116.0}),
            segment(2, "Customers with high data usage", {"DataUsage_GB": 80.0}),
            segment(3, "Customers with high data usage", {"DataUsage_GB": 20.0}),
        ]
    )
    assert by_spend == {  # an amount says it is a median; a column name reads as words
        0: "Lapsing repeat buyers, median spend 1,074",
        1: "Lapsing repeat buyers, median spend 116",
        2: "Customers with high data usage, median data usage GB 80",
        3: "Customers with high data usage, median data usage GB 20",
    }
    # the planted demo: 2% of customers lost their acquisition channel, and one of two same-named
    # segments is made of them; it says so, and the other keeps the plain name
    one_held = distinct_names(
        [
            segment(0, "Lapsing repeat buyers", {"monetary": 1074.0}, {"channel": ("paid_search", 0.3)}),
            segment(1, "Lapsing repeat buyers", {"monetary": 116.0}, {"channel": ("missing", 1.0)}),
        ]
    )
    assert one_held == {0: "Lapsing repeat buyers", 1: "Lapsing repeat buyers, channel missing"}
    identical = distinct_names(
        [
            segment(0, "Typical customers", {"x": 1.0}, share=0.4),
            segment(1, "Typical customers", {"x": 1.0}, share=0.6),
        ]
    )
    assert len(set(identical.values())) == 2 and not any("#" in name for name in identical.values())


def test_a_matched_segment_keeps_its_name_while_its_facts_hold():
    facts = SegmentFacts(recency="lapsing", habit="one-time").as_dict()
    changed = SegmentFacts(recency="lapsed", habit="one-time").as_dict()
    definitions = pd.DataFrame(
        {
            "segment_key": ["seg-0001", "seg-0002"],
            "segment_name": ["Lapsing one-time buyers (the name of last night)", "Active repeat buyers"],
            "name_facts": [json.dumps(facts, sort_keys=True), json.dumps(facts, sort_keys=True)],
        }
    )
    profiles = pd.DataFrame(
        {
            "label": [0, 1],
            "name": ["Lapsing one-time buyers", "Lapsed one-time buyers"],
            "description": ["a", "b"],
            "facts": [facts, changed],
            "share": [0.5, 0.5],
        }
    )
    names = segment_names(profiles, {0: "seg-0001", 1: "seg-0002"}, definitions)
    assert names["seg-0001"][0] == "Lapsing one-time buyers (the name of last night)"  # facts unchanged
    assert names["seg-0002"][0] == "Lapsed one-time buyers"  # its facts changed: the name follows them
    clash = profiles.assign(
        name=["Lapsing one-time buyers", "Lapsing one-time buyers (the name of last night)"]
    )
    renamed = segment_names(clash, {0: "seg-0001", 1: "seg-0003"}, definitions)
    assert renamed["seg-0001"][0] == "Lapsing one-time buyers (the name of last night)"
    assert renamed["seg-0003"][0] == "Lapsing one-time buyers (the name of last night), 50.0% of customers"


def test_column_names_read_as_words():
    assert column_words("monthly_charges") == column_words("MonthlyCharges") == "monthly charges"
    assert column_words("tenureInMonths") == "tenure in months"
    assert column_words("ARPU") == "ARPU" and column_words("customer-ID") == "customer ID"
    facts = SegmentFacts(levels={"MonthlyCharges": "high"}, categories={"PaperlessBilling": "Yes"})
    assert phrase(facts) == "Paperless billing customers with high monthly charges"
