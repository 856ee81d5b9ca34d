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
import time

from segflow.config import SegflowConfig


class TemporaryServer:
    """Prefect's temporary server, starting in a thread while this process gets the run ready."""

    def __init__(self) -> None:
        from prefect.server.api.server import SubprocessASGIServer

        self.server = SubprocessASGIServer()  # one per process: the flow's client takes this one
        self.failure: BaseException | None = None  # what starting it raised
        self.starting = threading.Thread(target=self._start, name="prefect-temporary-server", daemon=True)
        self.starting.start()
        # the thread copies os.environ for the server's process; imports here may change it
        while self.server.server_process is None and self.starting.is_alive():
            time.sleep(0.01)

    def _start(self) -> None:
        try:
            self.server.start()
        except BaseException as error:  # handed to `wait`
            self.failure = error

    def wait(self) -> BaseException | None:
        """Wait until the server answers; what starting it raised, if it failed."""
        self.starting.join()
        return self.failure

    def stop(self) -> None:
        """Stop the server (or its start) when no run will use it. Its thread then fails at its
        next look at the stopped process, and ends."""
        self.server.stop()
        self.starting.join()


def start_temporary_server() -> TemporaryServer | None:
    """Start Prefect's temporary server in the background, unless a server is configured
    (PREFECT_API_URL) or the temporary one is switched off, as Prefect's client decides."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    return TemporaryServer()


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
