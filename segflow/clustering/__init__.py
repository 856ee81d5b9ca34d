"""Clustering: find customer segments in a scaled feature matrix, and assign new rows to them.

Every algorithm is one entry of the registry and answers the same questions: fit on rows (for
the algorithms that take k, once per candidate k), the labels of those rows, a rule that assigns
new rows, and medoids or a dendrogram where it has them. The rest is done the same way for all:

    registry.py       Algorithm, ALGORITHMS (one entry per algorithm), SIMPLICITY
    partitioning.py   k-means, k-medoids, CLARA          hierarchical.py  BIRCH, agglomerative, DIANA
    density.py        DBSCAN, HDBSCAN, OPTICS            diana.py         the DIANA algorithm itself
    rfm_map.py        the RFM map (segflow.rfm) as a segmentation: each customer's cell
    assignment.py     Fit, the assignment rules, FitMemory, SegmentAssigner
    search.py         samples, the k search and the choice among algorithms
    scoring.py        the candidates' silhouette and DBCV on the score sample
    linkages.py       the stability refits' linkages, computed ahead on an idle core
    segmentation.py   fit_segmentation, assign_segments and the Segmentation they share
"""

from segflow.clustering.assignment import SegmentAssigner
from segflow.clustering.registry import ALGORITHMS, Algorithm
from segflow.clustering.segmentation import Segmentation, assign_segments, fit_segmentation

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "SegmentAssigner",
    "Segmentation",
    "assign_segments",
    "fit_segmentation",
]
