"""The HTML report against hostile names and a hostile reports folder: segment names are shown as
written (never parsed as math text), and the page is written without following planted links."""

from __future__ import annotations

import stat
from datetime import date

import numpy as np
import pandas as pd

from segflow.tasks.report import ReportInputs, render_report, run_summary_markdown, write_report

AS_OF = date(2026, 11, 1)
RUN_ID = "20261101-abcdef0123"
MATH_NAMES = [r"High $\foo$ spend", r"$\frac{1}{0}$ buyers", "Plain $5 buyers"]


def report_inputs(names: list[str]) -> ReportInputs:
    """A run's aggregates with these segment names, every chart of the page included."""
    keys = [f"seg-{i + 1:04d}" for i in range(len(names))]
    rng = np.random.default_rng(0)
    projection_keys = np.array(keys * 20)
    return ReportInputs(
        run_id=RUN_ID,
        as_of=AS_OF,
        status="published",
        algorithm="kmeans",
        params={"k": len(names)},
        scores={"silhouette": 0.5},
        k_search=[
            {"k": k, "silhouette": 0.5, "calinski_harabasz": 100.0, "davies_bouldin": 0.7} for k in (2, 3)
        ],
        choice=["chose kmeans k=2 (silhouette 0.500)"],
        gate_checks=[
            {
                "rule": "min_silhouette",
                "value": 0.5,
                "threshold": 0.25,
                "severity": "critical",
                "passed": True,
            }
        ],
        segments=pd.DataFrame(
            {
                "segment_key": keys,
                "segment_name": names,
                "description": ["spends a lot"] * len(names),
                "size": [100 * (i + 1) for i in range(len(names))],
                "share": [0.2] * len(names),
                "features": [{"spend": {"median": 1.0, "lift": 1.2}}] * len(names),
                "rules": [{"conditions": ["spend > 100"], "recall": 0.9, "precision": 0.8}] * len(names),
            }
        ),
        migration=pd.DataFrame(np.ones((len(names), len(names)), dtype=int), index=keys, columns=keys),
        projection=rng.normal(size=(len(projection_keys), 2)),
        projection_keys=projection_keys,
        silhouette_by_key=dict.fromkeys(keys, 0.5),
        dendrogram=None,
        customers=600,
        quarantined=0,
    )


def test_segment_names_with_math_text_are_shown_as_written():
    html = render_report(report_inputs(MATH_NAMES))
    assert r"High $\foo$ spend" in html and r"$\frac{1}{0}$ buyers" in html
    for chart in ("segment sizes", "2-D projection", "silhouette by segment", "migration matrix"):
        assert f'alt="{chart}' in html


def test_the_report_is_written_without_following_a_link_planted_at_its_old_temporary_name(tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    victim = tmp_path / "elsewhere" / "authorized_keys"
    victim.parent.mkdir()
    victim.write_text("ssh-ed25519 AAAA... admin\n")
    planted = folder / f".segments-{AS_OF.isoformat()}-{RUN_ID}.html.partial"
    planted.symlink_to(victim)

    path = write_report("<html>report</html>", folder, AS_OF, RUN_ID)

    assert victim.read_text() == "ssh-ed25519 AAAA... admin\n"
    assert path == folder / f"segments-{AS_OF.isoformat()}-{RUN_ID}.html"
    assert not path.is_symlink() and path.read_text() == "<html>report</html>"
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0  # not readable by every user
    assert sorted(p.name for p in folder.iterdir()) == [planted.name, path.name]  # no temporary left


def test_each_segments_rule_and_fidelity_are_shown_next_to_its_name_on_the_page_and_in_the_summary():
    inputs = report_inputs(["Lapsed one-time buyers", "Atypical customers"])
    inputs.segments["rules"] = [
        {"conditions": ["recency > 365 days", "orders = 1"], "recall": 0.94, "precision": 0.875},
        None,  # noise has no rule
    ]
    html = render_report(inputs)
    rows = {row.split("<br>")[0]: row for row in html.split("<tr><td>")[1:]}
    lapsed = rows["Lapsed one-time buyers"]
    assert "recency &gt; 365 days and orders = 1" in lapsed
    assert "captures 94% of the segment; 88% of the customers it captures are in the segment" in lapsed
    assert "no rule" in rows["Atypical customers"]

    summary = run_summary_markdown(inputs, None)
    lapsed_row = "| Lapsed one-time buyers | seg-0001 | 100 | 20.0% | recency \\> 365 days and orders = 1 "
    assert lapsed_row + "| 94% | 88% |" in summary
    assert (
        "| Atypical customers | seg-0002 | 200 | 20.0% | no rule: these customers fit no segment |  |  |"
        in summary
    )
