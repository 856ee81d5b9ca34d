"""The RFM vocabulary: quintile scores for recency, frequency and monetary value, and the classic RFM
segment map from (R, F, M) scores to the 11 names marketers use.

Scores. Each measure is scored 1-5 against four edges: the 20/40/60/80% quantiles of the fitted
customers' values, taken as values seen (the smallest value with at least that share of customers
at or below it). A customer's score is 1 plus the number of edges its value is above (for recency,
below: 5 = bought most recently). It is a function of the value alone, so tied customers share a
score, the score of the lowest rank in the tie (when 60% bought once, they all have F = 1); put
otherwise, the score is 1 + floor(5 x the share of fitted customers with a strictly worse value),
at most 5. New customers are scored against the same edges. log1p and the scalers are monotone per
column, so edges learned on the model's scaled columns score customers as the raw edges would.

The map. FM is the mean of the F and M scores. A customer takes the first row whose R range holds
its R and whose FM minimum its FM reaches; the rows with "any" FM catch every (R, F, M) left, so
each of the 125 score triples has exactly one name:

    segment               R      FM     who they are
    Champions             4-5    >= 4   recent, and among the most frequent and highest spenders
    Loyal                 3-5    >= 3   not lapsed; frequency and spend above the middle
    Potential loyalists   4-5    >= 2   recent, with repeat orders or a good basket
    New                   5      any    bought most recently, little so far
    Promising             4      any    recent, little so far
    Need attention        3      >= 2   middling recency, frequency and spend
    About to sleep        3      any    middling recency, low frequency and spend
    Can't lose them       1-2    >= 4   were among the most frequent and highest spenders, long ago
    At risk               1-2    >= 3   frequency and spend above the middle, long ago
    Hibernating           2      any    low frequency and spend, long ago
    Lost                  1      any    low frequency and spend, longest ago
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from segflow.tables import CUSTOMER_ID, TABLES

# the features stage's names of the three measures, in the order R, F, M
MEASURES = ("recency_days", "frequency", "monetary")
SCORE_COLUMNS = ("recency_score", "frequency_score", "monetary_score")
# +1 where a higher value is better; recency counts days since the last order, so fewer is better
ORIENTATION = np.array([-1.0, 1.0, 1.0])
QUINTILES = 5
# A value this close to an edge (relative, at least 1e-9 absolute) counts as on it: a customer tied
# with the edge must keep the edge's score when its scaled value is computed in another process or
# on another machine, whose log1p may round the last bit differently.
EDGE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class MapCell:
    """One row of the RFM map: a name, the R scores it takes, and the least FM (mean of F and M)."""

    name: str
    recency: tuple[int, int]
    min_fm: float
    meaning: str


RFM_MAP: tuple[MapCell, ...] = (
    MapCell("Champions", (4, 5), 4.0, "recent, and among the most frequent and highest spenders"),
    MapCell("Loyal", (3, 5), 3.0, "not lapsed; frequency and spend above the middle"),
    MapCell("Potential loyalists", (4, 5), 2.0, "recent, with repeat orders or a good basket"),
    MapCell("New", (5, 5), 1.0, "bought most recently, little so far"),
    MapCell("Promising", (4, 4), 1.0, "recent, little so far"),
    MapCell("Need attention", (3, 3), 2.0, "middling recency, frequency and spend"),
    MapCell("About to sleep", (3, 3), 1.0, "middling recency, low frequency and spend"),
    MapCell("Can't lose them", (1, 2), 4.0, "were among the most frequent and highest spenders, long ago"),
    MapCell("At risk", (1, 2), 3.0, "frequency and spend above the middle, long ago"),
    MapCell("Hibernating", (2, 2), 1.0, "low frequency and spend, long ago"),
    MapCell("Lost", (1, 1), 1.0, "low frequency and spend, longest ago"),
)
CELL_NAMES = tuple(cell.name for cell in RFM_MAP)


def map_cell(recency: int, frequency: int, monetary: int) -> int:
    """The position in RFM_MAP of the first row that takes these scores."""
    fm = (frequency + monetary) / 2
    for position, cell in enumerate(RFM_MAP):
        if cell.recency[0] <= recency <= cell.recency[1] and fm >= cell.min_fm:
            return position
    raise ValueError(f"no RFM map row takes R={recency}, F={frequency}, M={monetary}")


SCORES = range(1, QUINTILES + 1)
# MAP_LOOKUP[R - 1, F - 1, M - 1]: the map cell of every score triple
MAP_LOOKUP = np.array([[[map_cell(r, f, m) for m in SCORES] for f in SCORES] for r in SCORES], dtype=np.int64)


def quintile_edges(values: np.ndarray) -> np.ndarray:
    """The 20/40/60/80% quantiles of values, as values seen: the k-th edge is the smallest value with
    at least k/5 of the values at or below it (numpy's "inverted_cdf" method, in exact integers)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if len(ordered) == 0:
        raise ValueError("quintile edges need at least one value")
    positions = (np.arange(1, QUINTILES) * len(ordered) + QUINTILES - 1) // QUINTILES - 1
    return ordered[positions]


def quintile_scores(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """1 plus the number of edges each value is above (a value on an edge is not above it)."""
    cuts = edges + EDGE_TOLERANCE * np.maximum(1.0, np.abs(edges))
    return (1 + np.searchsorted(cuts, values, side="left")).astype(np.int8)


def cells_of(scores: np.ndarray) -> np.ndarray:
    """The RFM map cell (position in RFM_MAP) of each row of (R, F, M) scores."""
    scores = np.asarray(scores, dtype=np.int64)
    return MAP_LOOKUP[scores[:, 0] - 1, scores[:, 1] - 1, scores[:, 2] - 1]


def rfm_positions(model_columns: Sequence[str], rfm_columns: Sequence[str]) -> tuple[int, int, int] | None:
    """Where recency, frequency and monetary are among the model's columns; None when the run has no
    RFM features. -1 marks a measure preprocessing dropped (constant: every customer ties)."""
    if not rfm_columns:
        return None
    columns = list(model_columns)
    recency, frequency, monetary = (columns.index(name) if name in columns else -1 for name in MEASURES)
    return recency, frequency, monetary


@dataclass
class RfmMap:
    """The RFM map on the model's (scaled) columns: the quintile edges of R, F and M learned on the
    fitted customers, and the 5x5x5 lookup to map cells. It is also the assignment rule of
    `clustering.algorithm: rfm`: its labels are the map cells (positions in RFM_MAP)."""

    kind: ClassVar[str] = "rfm_map"
    positions: np.ndarray  # (3,) the matrix columns of R, F, M; -1: not a model column (all score 1)
    edges: np.ndarray  # (3, 4) each measure's edges, oriented so that higher is better
    lookup: np.ndarray  # (5, 5, 5) the map cell of every score triple (MAP_LOOKUP when fitted)
    describe: str = "RFM map cell of the quintile scores"

    @classmethod
    def fit(cls, matrix: np.ndarray, positions: Sequence[int]) -> RfmMap:
        """Learn each measure's quintile edges from the rows of a matrix."""
        positions = np.asarray(positions, dtype=np.int64)
        edges = np.zeros((len(MEASURES), QUINTILES - 1))
        for measure, column in enumerate(positions):
            if column >= 0:
                edges[measure] = quintile_edges(ORIENTATION[measure] * matrix[:, column])
        return cls(positions, edges, MAP_LOOKUP.copy())

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """Each row's R, F and M scores (1-5), as an (n, 3) array."""
        scores = np.ones((len(matrix), len(MEASURES)), dtype=np.int8)
        for measure, column in enumerate(self.positions):
            if column >= 0:
                scores[:, measure] = quintile_scores(
                    ORIENTATION[measure] * matrix[:, column], self.edges[measure]
                )
        return scores

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        scores = self.scores(matrix).astype(np.int64) - 1
        return self.lookup[scores[:, 0], scores[:, 1], scores[:, 2]]

    def saved(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"describe": self.describe}, {
            "positions": self.positions,
            "edges": self.edges,
            "lookup": self.lookup,
        }

    @classmethod
    def from_saved(cls, settings: dict, arrays: dict[str, np.ndarray]) -> RfmMap:
        return cls(arrays["positions"], arrays["edges"], arrays["lookup"], settings["describe"])


def segment_rfm(scores: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Per segment label: its median R, F and M scores and the map cell of those medians.

    The median is the lower one for an even count, so it is a score the segment's customers have
    and at least half of them score at least that much."""
    frame = pd.DataFrame(np.asarray(scores, dtype=np.int64), columns=list(SCORE_COLUMNS))
    medians = frame.groupby(np.asarray(labels)).quantile(0.5, interpolation="lower").astype(np.int64)
    medians["rfm_segment"] = [CELL_NAMES[cell] for cell in cells_of(medians.to_numpy())]
    return medians.rename_axis("label")


def scores_table(customer_ids: pd.Series, scores: np.ndarray, as_of: date, id_type: pa.DataType) -> pa.Table:
    """The `customer_rfm_scores` rows: each customer's R, F and M scores and map cell as of a date."""
    scores = np.asarray(scores)
    names = pa.DictionaryArray.from_arrays(pa.array(cells_of(scores), pa.int32()), pa.array(CELL_NAMES))
    columns = {
        CUSTOMER_ID: pa.Array.from_pandas(customer_ids),
        **{name: pa.array(scores[:, measure].astype(np.int16)) for measure, name in enumerate(SCORE_COLUMNS)},
        "rfm_segment": names.cast(pa.string()),
        "as_of": pa.array(np.full(len(scores), np.datetime64(as_of, "D"))),
    }
    schema = TABLES["customer_rfm_scores"].arrow_schema(id_type)
    return pa.table({field.name: columns[field.name].cast(field.type) for field in schema}, schema=schema)
