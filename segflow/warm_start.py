"""A run without a Prefect server: get the run ready while Prefect's temporary server starts.

Without PREFECT_API_URL, Prefect starts a temporary server when a flow first calls its API and waits
for it to answer: several seconds, and on a fresh Prefect home the time its database's migrations
take (about 10 s on a quiet 2-core machine). The segflow process would sit idle all that time. So
`segflow` starts that same server (Prefect's own `SubprocessASGIServer`, which the flow then finds
running) before it writes the demo's data and imports what the run will use, and waits for it only
then. With a server (PREFECT_API_URL) nothing of this happens: the run imports each module where it
first needs it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from segflow.config import SegflowConfig


def start_temporary_server() -> Callable[[], None] | None:
    """Start Prefect's temporary server in the background when no server is configured (None when
    one is); returns the wait for it to answer, which raises what starting it raised."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # one per process: the flow's client takes this one
    failures: list[BaseException] = []

    def start() -> None:
        try:
            server.start()
        except BaseException as error:  # handed to the waiting thread
            failures.append(error)

    starting = threading.Thread(target=start, name="prefect-temporary-server", daemon=True)
    starting.start()

    def wait() -> None:
        starting.join()
        if failures:
            raise failures[0]

    return wait


def modules_the_run_uses(config: SegflowConfig) -> list[str]:
    """The modules a segmentation run of this config imports where it first needs them: Great
    Expectations for a contract, scikit-learn and SciPy for the clustering and its scores, hdbscan
    when a density method can run, matplotlib and jinja2 for the report."""
    from segflow.clustering.registry import ALGORITHMS

    modules = []
    if any(source.contract is not None for _, source in config.sources.configured()):
        modules.append("great_expectations")
    modules += ["sklearn.cluster", "sklearn.metrics", "scipy.cluster.hierarchy", "scipy.spatial"]
    clustering = config.clustering
    competing = clustering.auto_candidates if clustering.algorithm == "auto" else (clustering.algorithm,)
    if any(ALGORITHMS[name].family == "density" for name in competing):
        modules.append("hdbscan")
    if config.publish.reports is not None:
        modules += ["matplotlib.figure", "matplotlib.backends.backend_agg", "jinja2"]
    return modules


def import_modules(names: list[str]) -> None:
    for name in names:
        importlib.import_module(name)
