"""Rules that explain segment membership: planted rules come back, fidelity is exact, and every rule
is at most three conditions that can all hold together."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from segflow.explain import RFM_WORDS, Condition, Customers, rule_fidelity, segment_rules
from segflow.tables import NOISE_LABEL
from segflow.tasks.features import RFM_COLUMNS


def planted_customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers in three segments defined by rules that never overlap, with two features that
    explain nothing: 0 has recency > 400 days and one order; 1 a month-to-month contract and monthly
    charges > 70; 2 is everyone else, among them recent one-time buyers, lapsed repeat buyers and
    month-to-month customers at lower charges (so that no single condition tells a segment)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[0.3, 0.25, 0.45])
    recency = rng.integers(0, 391, n)
    frequency = rng.integers(1, 11, n)
    contract = rng.choice(["one year", "two year"], n).astype(object)
    # no charges between 65 and 75 for anyone: the tree's threshold falls in that gap, where 70 is
    # the roundest number
    charges = np.where(rng.random(n) < 0.5, rng.uniform(20, 65, n), rng.uniform(75, 120, n)).round(2)
    lapsed, hot, rest = labels == 0, labels == 1, labels == 2
    recency[lapsed] = rng.integers(410, 900, lapsed.sum())
    frequency[lapsed] = 1
    charges[lapsed] = rng.uniform(20, 65, lapsed.sum()).round(2)
    contract[hot] = "month-to-month"
    charges[hot] = rng.uniform(75, 120, hot.sum()).round(2)
    lapsed_repeat = rest & (rng.random(n) < 0.3)
    recency[lapsed_repeat] = rng.integers(410, 900, lapsed_repeat.sum())
    frequency[lapsed_repeat] = rng.integers(2, 11, lapsed_repeat.sum())
    cheap = rest & (rng.random(n) < 0.3)
    contract[cheap] = "month-to-month"
    charges[cheap] = rng.uniform(20, 65, cheap.sum()).round(2)
    readable = pd.DataFrame(
        {
            "recency_days": recency.astype(float),
            "frequency": frequency.astype(float),
            "monthly_charges": charges,
            "age": rng.uniform(18, 80, n).round(),
            "contract": contract,
            "region": rng.choice(["north", "south", "east"], n),
        }
    )
    return readable, labels


NUMERIC, CATEGORICAL = ["recency_days", "frequency", "monthly_charges", "age"], ["contract", "region"]


def test_rules_recover_planted_thresholds_and_a_category():
    """With these customers the balanced trees split the already pure nodes 'orders = 1 and recency
    > 400 days' and 'month-to-month and charges > 70' once more (by region, by orders): the rule is
    the pure node, not one of its halves."""
    readable, labels = planted_customers(6_000, seed=0)
    rules = segment_rules(readable, labels, NUMERIC, CATEGORICAL)
    lapsed, hot = rules[0], rules[1]
    assert {c.text() for c in lapsed.conditions} == {"recency > 400 days", "orders = 1"}
    assert {c.text() for c in hot.conditions} == {"contract = month-to-month", "monthly_charges > 70"}
    assert (lapsed.recall, lapsed.precision) == (1.0, 1.0)
    assert (hot.recall, hot.precision) == (1.0, 1.0)
    assert lapsed.as_record() == {
        "conditions": [c.text() for c in lapsed.conditions],
        "recall": 1.0,
        "precision": 1.0,
    }


def test_rules_learned_on_a_sample_are_measured_on_every_customer():
    readable, labels = planted_customers(12_000, seed=4)
    rules = segment_rules(readable, labels, NUMERIC, CATEGORICAL, sample_size=1_500)
    customers = Customers(readable)
    for label, rule in rules.items():
        assert (rule.recall, rule.precision) == rule_fidelity(rule.conditions, customers, labels == label)
    assert {c.feature for c in rules[0].conditions} == {"recency_days", "frequency"}
    assert {c.feature for c in rules[1].conditions} == {"contract", "monthly_charges"}
    assert min(rules[0].recall, rules[0].precision, rules[1].recall, rules[1].precision) >= 0.99


def test_fidelity_is_exact_on_a_hand_made_example():
    """Ten customers; the rule 'spend > 100 and plan = gold' captures rows 0, 1, 2 and 5. The segment
    is rows 0, 1 and 3: the rule captures 2 of its 3 customers (recall 2/3), and 2 of the 4 it
    captures are in it (precision 1/2)."""
    readable = pd.DataFrame(
        {
            "spend": [150, 120, 300, 90, 500, 101, 100, 20, 0, 250],
            "plan": ["gold", "gold", "gold", "gold", "basic", "gold", "gold", "gold", "basic", "basic"],
        }
    )
    in_segment = np.zeros(10, dtype=bool)
    in_segment[[0, 1, 3]] = True
    rule = (Condition("spend", above=100), Condition("plan", equals="gold"))
    assert rule_fidelity(rule, Customers(readable), in_segment) == (2 / 3, 1 / 2)


def test_a_small_segmentation_gets_the_rules_worked_out_by_hand():
    """Spend 10..80 by tens; segment 1 is spend 40..70, segment 0 the rest, one customer is noise.
    Segment 1 is cut out by the thresholds 35 and 75 (the roundest numbers between 30 and 40, and
    70 and 80): all 4 of its customers and nobody else. Segment 0's best leaf is 'spend ≤ 35': 3
    of its 4 customers, none of anyone else's (the leaf spend > 75 holds only its fourth, F1 2/5 <
    6/7). The noise customer (spend 90) gets no rule, but counts as one of 'everyone else'."""
    readable = pd.DataFrame({"spend": [10.0, 20, 30, 40, 50, 60, 70, 80, 90]})
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0, NOISE_LABEL])
    rules = segment_rules(readable, labels, ["spend"], [])
    assert set(rules) == {0, 1}
    assert rules[1].text() == "35 < spend ≤ 75"
    assert (rules[1].recall, rules[1].precision) == (1.0, 1.0)
    assert rules[0].text() == "spend ≤ 35"
    assert (rules[0].recall, rules[0].precision) == (3 / 4, 1.0)


def test_conditions_read_plainly():
    assert Condition("recency_days", above=365).text() == "recency > 365 days"
    assert Condition("frequency", exactly=1).text() == "orders = 1"
    assert Condition("monetary", above=1230).text() == "spend > 1,230"
    assert Condition("tenure_days", above=90, at_most=365).text() == "90 < tenure ≤ 365 days"
    assert Condition("monthly_charges", at_most=12.5).text() == "monthly_charges ≤ 12.5"
    assert Condition("internet_service", none_of=("dsl",)).text() == "internet_service ≠ dsl"
    assert Condition("contract", equals="month-to-month").text() == "contract = month-to-month"
    assert set(RFM_WORDS) == set(RFM_COLUMNS)


def test_a_category_left_with_one_value_is_named_by_it():
    """'not one year and not two year' among three contracts reads 'contract = month-to-month'."""
    rng = np.random.default_rng(5)
    contract = rng.choice(["month-to-month", "one year", "two year"], 3_000)
    readable = pd.DataFrame({"contract": contract, "noise": rng.normal(size=3_000)})
    labels = (contract == "month-to-month").astype(int)
    rules = segment_rules(readable, labels, ["noise"], ["contract"])
    assert rules[1].text() == "contract = month-to-month"
    assert (rules[1].recall, rules[1].precision) == (1.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), segments=st.integers(2, 8), n=st.integers(20, 600))
def test_rules_have_at_most_three_conditions_that_can_all_hold(seed, segments, n):
    """On random data and labels (no structure to find): at most three conditions, one per feature,
    every range non-empty, and some customers meet them all (a rule never contradicts itself)."""
    rng = np.random.default_rng(seed)
    readable = pd.DataFrame(
        {
            "frequency": rng.integers(0, 4, n).astype(float),
            "spend": rng.lognormal(3, 2, n),
            "score": rng.normal(size=n).round(1),
            "channel": rng.choice(["web", "app", "shop", "missing"], n),
            "city": rng.choice([f"city {i}" for i in range(30)], n),
        }
    )
    labels = rng.integers(-1, segments, n)
    numeric, categorical = ["frequency", "spend", "score"], ["channel", "city"]
    customers = Customers(readable)
    rules = segment_rules(readable, labels, numeric, categorical, sample_size=300, seed=seed % 1000)
    assert set(rules) == set(np.unique(labels)) - {NOISE_LABEL}
    for label, rule in rules.items():
        assert len(rule.conditions) <= 3
        assert len({c.feature for c in rule.conditions}) == len(rule.conditions)
        for condition in rule.conditions:
            if condition.above is not None and condition.at_most is not None:
                assert condition.above < condition.at_most
        captured = np.ones(n, dtype=bool)
        for condition in rule.conditions:
            captured &= condition.holds(customers)
        assert captured.any()
        assert (rule.recall, rule.precision) == rule_fidelity(rule.conditions, customers, labels == label)
