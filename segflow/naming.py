"""Segment names a marketer can act on: true to the segment's medians, and distinct from each other.

A name is built from facts, never from lifts against the average (on a base that has mostly lapsed,
lapsed customers would read as "active"):

- recency words from absolute windows in days: Active (last order within `active_days`), Lapsing
  (within `lapsing_days`), Lapsed (longer ago); New when the first order is within `active_days`;
- one-time / repeat / frequent from the median number of orders (frequent: at least 3 and at least
  the base's 90th percentile of buyers);
- high-/low-spend (and the other numbers' high/low) from the base's quartiles: the segment's
  median at or above the base's 75th percentile, or at or below its 25th;
- a category when it dominates the segment but not the base (`dominant_share` of the segment,
  at most `base_share` of the base), e.g. "month-to-month, fiber optic".

Names are unique within a run without counters: segments that would share a name get the facts
that tell them apart (a category value they differ in, then the median of the number they differ
most in). `contradictions` checks a segment's facts against its medians; a property test runs it
over generated bases.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segflow.config import NamingConfig

RFM = ("recency_days", "frequency", "monetary")
TRUE_VALUES = {"yes", "true", "y", "1"}
FALSE_VALUES = {"no", "false", "n", "0"}
UNNAMED_VALUES = {"missing", "other"}  # what preprocessing calls an empty or a rare value: not a fact
# how a median of the RFM columns reads in a description or a qualifier
MEDIAN_WORDS = {
    "recency_days": "last order {value} days ago",
    "frequency": "{value} orders",
    "monetary": "spend {value}",
    "tenure_days": "first order {value} days ago",
    "avg_order_value": "basket {value}",
}
HELD_SHARE = 0.8  # a category value that holds this share of one of two same-named segments names it
WHOLE_NUMBERS = ("recency_days", "frequency", "tenure_days")  # days and orders read as integers


def column_words(column: str) -> str:
    """A column name as words: 'monthly_charges' and 'MonthlyCharges' read 'monthly charges'; an
    acronym stays as written ('ARPU', 'tenureInMonths' -> 'tenure in months')."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", str(column))
    words = re.split(r"[\s_\-]+", spaced.strip())
    return " ".join(word if len(word) > 1 and word.isupper() else word.lower() for word in words if word)


def median_text(column: str, median: float, digits: int = 3) -> str:
    """A segment's median in the words of its column: 'last order 238 days ago', '1 order', 'spend 47.1'."""
    if column in WHOLE_NUMBERS:
        value = f"{round(median):,}"
    elif abs(median) >= 10**digits:
        value = f"{median:,.0f}"
    else:
        value = _rounded(median, digits)
    if column not in MEDIAN_WORDS:  # a column name is data: never a format string
        return f"median {column_words(column)} {value}"
    text = MEDIAN_WORDS[column].format(value=value)
    return "1 order" if text == "1 orders" else text


@dataclass
class SegmentFacts:
    """What a name may claim about a segment, each claim checkable against its medians."""

    never_bought: bool = False
    recency: str | None = None  # active | lapsing | lapsed | new
    habit: str | None = None  # one-time | repeat | frequent
    spend: str | None = None  # high-spend | low-spend
    bargain: bool = False  # repeat buyers whose median basket is in the base's lowest quarter
    levels: dict[str, str] = field(default_factory=dict)  # other numbers: column -> high | low
    categories: dict[str, str] = field(default_factory=dict)  # column -> the value that dominates

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Base:
    """The whole base's quartiles (and buyers' 90th percentile of orders), and its category shares."""

    quantiles: pd.DataFrame  # index 0.25, 0.5, 0.75 (and 0.9 for frequency among buyers), columns: features
    category_shares: dict[str, pd.Series]

    @classmethod
    def of(cls, readable: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Base:
        quantiles = readable[numeric].quantile([0.25, 0.5, 0.75]) if numeric else pd.DataFrame()
        if "frequency" in numeric:
            buyers = readable.loc[readable["frequency"] > 0, "frequency"]
            quantiles.loc[0.9, "frequency"] = buyers.quantile(0.9) if len(buyers) else 0.0
        shares = {column: readable[column].value_counts(normalize=True) for column in categorical}
        return cls(quantiles, shares)

    def level(self, column: str, median: float) -> str | None:
        """high or low: the median at or above the base's 75th percentile, or at or below its 25th."""
        low, high = self.quantiles.loc[0.25, column], self.quantiles.loc[0.75, column]
        if high <= low:  # no spread to judge by
            return None
        if median >= high:
            return "high"
        return "low" if median <= low else None


def segment_facts(
    medians: dict[str, float],
    category_shares: dict[str, pd.Series],
    base: Base,
    rules: NamingConfig,
) -> SegmentFacts:
    """The facts a segment's name states, from its medians and its categories' shares."""
    facts = SegmentFacts()
    if set(RFM) <= medians.keys():
        if medians["frequency"] == 0:
            facts.never_bought = True
        else:
            facts.recency = recency_word(medians, rules)
            facts.habit = habit_word(medians["frequency"], base)
            spend = base.level("monetary", medians["monetary"])
            facts.spend = None if spend is None else f"{spend}-spend"
            if "avg_order_value" in medians and facts.habit != "one-time":
                facts.bargain = base.level("avg_order_value", medians["avg_order_value"]) == "low"
    others = {column: median for column, median in medians.items() if column not in (*RFM, *MEDIAN_WORDS)}
    distinct = {column: base.level(column, median) for column, median in others.items()}
    distinct = {column: level for column, level in distinct.items() if level is not None}
    ranked = sorted(distinct, key=lambda column: -abs(_percentile(base, column, others[column]) - 0.5))
    facts.levels = {column: distinct[column] for column in ranked[:2]}
    dominant = {}
    for column, shares in category_shares.items():
        if (
            len(shares)
            and shares.iloc[0] >= rules.dominant_share
            and str(shares.index[0]).lower() not in UNNAMED_VALUES
        ):
            value = shares.index[0]
            in_base = float(base.category_shares[column].get(value, 0.0))
            if in_base <= rules.base_share:
                dominant[column] = (value, shares.iloc[0] - in_base)

    def order(column: str) -> tuple[bool, float]:  # values read better first, then yes/no flags
        flag = str(dominant[column][0]).lower() in TRUE_VALUES | FALSE_VALUES
        return flag, -dominant[column][1]

    for column in sorted(dominant, key=order)[:2]:
        facts.categories[column] = dominant[column][0]
    return facts


def recency_word(medians: dict[str, float], rules: NamingConfig) -> str:
    if medians.get("tenure_days", np.inf) <= rules.active_days:
        return "new"
    if medians["recency_days"] <= rules.active_days:
        return "active"
    return "lapsing" if medians["recency_days"] <= rules.lapsing_days else "lapsed"


def habit_word(frequency: float, base: Base) -> str:
    if frequency <= 1:
        return "one-time"
    return "frequent" if frequency >= max(3.0, base.quantiles.loc[0.9, "frequency"]) else "repeat"


def _percentile(base: Base, column: str, value: float) -> float:
    """Where a value sits in the base's quartiles, as a share between 0 and 1 (interpolated)."""
    points = base.quantiles[column].loc[[0.25, 0.5, 0.75]].to_numpy(dtype=float)
    return float(np.interp(value, points, [0.25, 0.5, 0.75], left=0.0, right=1.0))


def phrase(facts: SegmentFacts) -> str:
    """The name the facts give, e.g. 'Lapsed one-time low-spend buyers, marketplace'."""
    categories = [category_text(column, value) for column, value in facts.categories.items()]
    if facts.never_bought:
        return ", ".join(["Never purchased", *categories])
    if facts.recency is not None:
        noun = "bargain hunters" if facts.bargain else "buyers"
        spend = None if facts.bargain and facts.spend == "low-spend" else facts.spend
        words = [facts.recency, facts.habit, spend, noun]
        head = " ".join(word for word in words if word)
        return ", ".join([head[0].upper() + head[1:], *categories])
    levels = [f"{level} {column_words(column)}" for column, level in facts.levels.items()]
    if not categories and not levels:
        return "Typical customers"
    head = ", ".join(categories) + (" customers" if categories else "Customers")
    text = head + (" with " + " and ".join(levels) if levels else "")
    return text[0].upper() + text[1:]


def category_text(column: str, value: str) -> str:
    """A category value as a name shows it; a yes/no value says its column ('paperless billing',
    'no internet service'), a missing one too."""
    words, lowered = column_words(column), str(value).lower()
    if lowered in TRUE_VALUES:
        return words
    if lowered in FALSE_VALUES:
        return f"no {words}"
    return f"{words} {value}" if lowered in UNNAMED_VALUES else str(value)


def contradictions(
    facts: SegmentFacts,
    medians: dict[str, float],
    category_shares: dict[str, pd.Series],
    base: Base,
    rules: NamingConfig,
) -> list[str]:
    """Every claim of the facts that the segment's medians or shares do not bear out (empty: the name
    is true)."""
    wrong = []
    if facts.never_bought and medians.get("frequency") != 0:
        wrong.append(f"never purchased, but the median is {medians.get('frequency')} orders")
    if facts.recency is not None:
        recency, tenure = medians["recency_days"], medians.get("tenure_days", np.inf)
        holds = {
            "new": tenure <= rules.active_days,
            "active": recency <= rules.active_days,
            "lapsing": rules.active_days < recency <= rules.lapsing_days,
            "lapsed": recency > rules.lapsing_days,
        }[facts.recency]
        if not holds:
            wrong.append(f"{facts.recency}, but the median recency is {recency:g} days (tenure {tenure:g})")
    if facts.habit is not None:
        frequency = medians["frequency"]
        holds = {"one-time": frequency <= 1, "repeat": frequency > 1, "frequent": frequency >= 3}[facts.habit]
        if not holds:
            wrong.append(f"{facts.habit}, but the median is {frequency:g} orders")
    if facts.spend is not None and base.level("monetary", medians["monetary"]) != facts.spend.split("-")[0]:
        wrong.append(f"{facts.spend}, but the median spend {medians['monetary']:g} is not in that quarter")
    for column, level in facts.levels.items():
        if base.level(column, medians[column]) != level:
            wrong.append(f"{level} {column}, but its median {medians[column]:g} is not in that quarter")
    for column, value in facts.categories.items():
        share = float(category_shares[column].get(value, 0.0))
        if (
            share < rules.dominant_share
            or float(base.category_shares[column].get(value, 0.0)) > rules.base_share
        ):
            wrong.append(f"{column} {value}, but it holds {share:.0%} of the segment")
    return wrong


def distinct_names(segments: list[dict[str, Any]]) -> dict[int, str]:
    """A unique name per segment label, without counters: segments that would share a name get what
    tells them apart (`qualifiers`), at most three times, then their share of customers. Each
    segment is a dict with label, name (from its facts), medians, modes (category column -> (value,
    share)) and share."""
    names = {segment["label"]: segment["name"] for segment in segments}
    for attempt in range(4):
        groups: dict[str, list[dict[str, Any]]] = {}
        for segment in segments:
            groups.setdefault(names[segment["label"]], []).append(segment)
        clashing = [group for group in groups.values() if len(group) > 1]
        if not clashing:
            break
        for group in clashing:
            found = qualifiers(group) if attempt < 3 else {}
            for segment in group:
                label = segment["label"]
                if label in found:
                    names[label] += ", " + found[label]
                elif len(group) - len(found) > 1:  # one left without a qualifier keeps its name
                    names[label] += f", {segment['share']:.2%} of customers"
    return names


def qualifiers(group: list[dict[str, Any]]) -> dict[int, str]:
    """What tells segments of one name apart: a category whose most common value differs between
    them; else, of two, a category value that holds one of them ('acquisition channel missing': the
    other keeps the plain name); else the number whose medians differ most ('last order 400 days ago')."""
    columns = sorted({column for segment in group for column in segment["modes"]})
    for column in columns:
        values = [segment["modes"].get(column, (None, 0.0)) for segment in group]
        if all(value is not None and share >= 0.5 for value, share in values) and len(
            {v for v, _ in values}
        ) == len(group):
            return {
                segment["label"]: category_text(column, value)
                for segment, (value, _) in zip(group, values, strict=True)
            }
    for column in columns if len(group) == 2 else []:
        values = [segment["modes"].get(column, (None, 0.0)) for segment in group]
        held = [i for i, (value, share) in enumerate(values) if value is not None and share >= HELD_SHARE]
        if len(held) == 1 and values[held[0]][0] != values[1 - held[0]][0]:
            return {group[held[0]]["label"]: category_text(column, values[held[0]][0])}
    numbers = sorted({column for segment in group for column in segment["medians"]})
    best, spread = None, 0.0
    for column in numbers:
        medians = [segment["medians"].get(column) for segment in group]
        if any(median is None for median in medians):
            continue
        scale = max(abs(m) for m in medians) or 1.0
        relative = (max(medians) - min(medians)) / scale
        if relative > spread:
            best, spread = column, relative
    if best is None:
        return {}
    for digits in (2, 3, 4):
        shown = {
            segment["label"]: qualifier_text(best, segment["medians"][best], digits) for segment in group
        }
        if len(set(shown.values())) == len(group):
            break
    return shown


def qualifier_text(column: str, median: float, digits: int) -> str:
    """A median that tells same-named segments apart; an amount says it is a median ('median spend
    1,074', not 'spend 1,074', which reads as what every customer spent)."""
    text = median_text(column, median, digits)
    return text if column in WHOLE_NUMBERS or text.startswith("median ") else f"median {text}"


def _rounded(value: float, digits: int) -> str:
    """A number with a few significant digits, without a trailing '.0'."""
    text = f"{float(value):.{digits}g}"
    return str(int(float(text))) if "e" in text or float(text).is_integer() else text
