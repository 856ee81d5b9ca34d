"""The `segflow` command line: run the nightly flow on a config file or on the embedded demo."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from segflow.config import SegflowConfig, build_config, read_config_file
from segflow.errors import ConfigError, SegflowError
from segflow.process_memory import freeze_long_lived, own_the_process
from segflow.timing import process_seconds

DEMO_OUTPUT = Path("segflow_output")
NIGHTLY_CRON = "0 2 * * *"


def parse_as_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--as-of expects YYYY-MM-DD, got {text!r}") from error


DEMO_NAMES = ("planted", "retail", "telecom")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="YAML config file (default: the embedded demo)")
    source.add_argument(
        "--demo",
        choices=DEMO_NAMES,
        default="planted",
        help="without --config: the planted demo (default), or realistic retail or telecom data",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set clustering.algorithm=hdbscan",
    )


def add_as_of_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        type=parse_as_of,
        default=None,
        help="business date of the run, YYYY-MM-DD (default: today)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="segment the customer base and publish the segments")
    add_config_arguments(run)
    add_as_of_argument(run)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="everything but publishing: print what would change and exit as the run would; write nothing",
    )
    score = commands.add_parser(
        "score",
        help="assign the customers of the configured sources to the published segments, without refitting",
    )
    add_config_arguments(score)
    add_as_of_argument(score)
    backfill = commands.add_parser("backfill", help="run the as-of dates of a range in order")
    add_config_arguments(backfill)
    backfill.add_argument("--from", dest="start", type=parse_as_of, required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", type=parse_as_of, required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--force", action="store_true", help="run dates that are already published again")
    runs = commands.add_parser("runs", help="list recent runs from segmentation_runs")
    add_config_arguments(runs)
    runs.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    serve = commands.add_parser(
        "serve", help="register the nightly and on-demand deployments and run their flow runs"
    )
    add_config_arguments(serve)
    serve.add_argument("--timezone", default="UTC", help="IANA time zone of the nightly run (default UTC)")
    serve.add_argument("--cron", default=NIGHTLY_CRON, help=f"nightly schedule (default '{NIGHTLY_CRON}')")
    docs = commands.add_parser(
        "data-docs", help="build Great Expectations Data Docs from a run's validation results"
    )
    docs.add_argument("results", type=Path, help="a run's validation-<as_of>-<run_id> folder")
    docs.add_argument("--out", type=Path, default=None, help="site folder (default: RESULTS/data_docs)")
    return parser


def data_docs_command(arguments: argparse.Namespace) -> int:
    files = sorted(arguments.results.glob("validation_*.json"))
    if not files:
        print(f"segflow: no validation_*.json files in {arguments.results}", file=sys.stderr)
        return 2
    from segflow.contracts.results import build_data_docs

    index = build_data_docs(files, arguments.out or arguments.results / "data_docs")
    print(f"segflow: Data Docs at {index} (its pages load their styles from public CDNs)")
    return 0


def load_run_config(config_path: Path | None, overrides: list[str], demo: str = "planted") -> SegflowConfig:
    """The validated config: the file's, or a demo's (its data is written by `write_demo_data`)."""
    if config_path is not None:
        return build_config(read_config_file(config_path), overrides)
    from segflow.demo import demos

    return build_config(demos()[demo].config(demo_output(demo)), overrides)


def write_demo_data(demo: str) -> None:
    """Generate a demo's data, once: later runs read what the first one wrote."""
    from segflow.demo import demos

    demos()[demo].ensure_data(demo_output(demo))


def demo_output(demo: str) -> Path:
    """Where a demo reads and writes: `segflow_output/` for the planted one, a folder in it for the rest."""
    return (DEMO_OUTPUT / ("." if demo == "planted" else demo)).resolve()


def demo_as_of(arguments: argparse.Namespace) -> date | None:
    """The run's as-of date: --as-of, else on a demo the day its data ends, where it has one."""
    if arguments.config is not None or arguments.as_of is not None:
        return arguments.as_of
    from segflow.demo import demos

    return demos()[arguments.demo].as_of


def run_flow(flow_call: Callable[[], dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
    """Run a flow; on failure print what happened and return its exit code."""
    freeze_long_lived()  # what the command imported and read lives to its end
    try:
        return 0, flow_call()
    except SegflowError as error:
        print(f"\nsegflow: run failed (exit {error.exit_code}): {error}", file=sys.stderr)
        if error.exit_code in (3, 4):
            print(
                "segflow: nothing new was published; the last good publication is still current.",
                file=sys.stderr,
            )
        return error.exit_code, None
    except Exception as error:  # an unexpected failure: exit 1 with the cause on one line
        print(f"\nsegflow: run failed (exit 1): {type(error).__name__}: {error}", file=sys.stderr)
        return 1, None


def flow_command(run: Callable[[], dict[str, Any]], outcome: Callable[[dict[str, Any]], str]) -> int:
    """Run a flow; when it publishes, say what it did and where it wrote."""
    code, summary = run_flow(run)
    if summary is not None:
        print(f"\nsegflow: {outcome(summary)}")
        for target in summary["targets"]:
            print(f"segflow: output: {target}")
        print(timing_text(summary["stage_seconds"]))
    return code


def timing_text(stage_seconds: dict[str, float]) -> str:
    """Each stage's seconds in this process, then the wall time of the whole segflow process as
    users wait for it (interpreter start, imports and Prefect's own start included)."""
    lines = ["segflow: time (seconds):"]
    lines += [f"  {stage:<28} {seconds:>8.2f}" for stage, seconds in stage_seconds.items()]
    lines.append(f"  {'whole process (wall)':<28} {process_seconds():>8.2f}")
    return "\n".join(lines)


def run_command(arguments: argparse.Namespace, config: SegflowConfig) -> int:
    from segflow.flows.segmentation import segmentation_flow

    if arguments.dry_run:
        code, summary = run_flow(
            lambda: segmentation_flow(config=config, as_of=arguments.as_of, dry_run=True)
        )
        if summary is None:
            return code
        print("\n" + dry_run_text(summary))
        print(timing_text(summary["stage_seconds"]))
        return 4 if summary["gate"] == "rejected" else 0
    return flow_command(
        lambda: segmentation_flow(config=config, as_of=arguments.as_of),
        lambda summary: (
            f"published {summary['customers']:,} customers in {summary['segments']} segments "
            f"as of {summary['as_of']} (run {summary['run_id']}; {summary['changes']:,} changes, "
            f"{summary['quarantined_rows']:,} quarantined rows)"
        ),
    )


def dry_run_text(summary: dict[str, Any]) -> str:
    """What a dry run found: the changes publishing would make, per segment, and the gate's verdict."""
    lines = [
        f"segflow: dry run as of {summary['as_of']} (run {summary['run_id']}): nothing was published.",
        f"segflow: publishing would give {summary['customers']:,} customers in "
        f"{summary['segments']} segments: "
        f"{summary['entered']:,} entering, {summary['moved']:,} moving, {summary['left']:,} leaving"
        + (
            f" ({summary['changed_share']:.1%} of the last publication's customers move)"
            if summary["changed_share"] is not None
            else " (no earlier publication)"
        ),
        f"segflow: new segment keys: {', '.join(summary['new_keys']) or 'none'}; "
        f"retired: {', '.join(summary['retired_keys']) or 'none'}",
        f"{'segment':<44} {'entering':>9} {'moving in':>10} {'moving out':>11} {'leaving':>8}",
    ]
    for segment in summary["by_segment"]:
        name = f"{segment['segment_key']} {segment['segment_name']}"[:44]
        lines.append(
            f"{name:<44} {segment['entered']:>9,} {segment['moved_in']:>10,} {segment['moved_out']:>11,} "
            f"{segment['left']:>8,}"
        )
    verdict = {"published": "passed", "published_override": "failed, but overridden", "rejected": "REJECTED"}
    lines.append(
        f"segflow: gate {verdict[summary['gate']]}" + "".join(f"\n  - {r}" for r in summary["gate_reasons"])
    )
    if summary["gate"] == "rejected":
        lines.append("segflow: a real run would exit 4 and publish nothing.")
    return "\n".join(lines)


def score_command(arguments: argparse.Namespace, config: SegflowConfig) -> int:
    from segflow.flows.scoring import scoring_flow

    return flow_command(
        lambda: scoring_flow(config=config, as_of=arguments.as_of),
        lambda summary: (
            f"scored {summary['customers']:,} customers as of {summary['as_of']} with the model "
            f"of run {summary['model_run_id']} (run {summary['run_id']}; {summary['changes']:,} entered "
            f"or moved, {summary['quarantined_rows']:,} quarantined rows)"
        ),
    )


def backfill_command(arguments: argparse.Namespace, config: SegflowConfig) -> int:
    from segflow.flows.backfill import backfill_flow

    code, summary = run_flow(
        lambda: backfill_flow(config=config, start=arguments.start, end=arguments.end, force=arguments.force)
    )
    if summary is not None:
        print(f"\nsegflow: backfill published {len(summary['published'])} dates: {summary['published']}")
        if summary["skipped"]:
            print(f"segflow: already published, skipped (use --force to redo): {summary['skipped']}")
        if summary["too_old"]:
            print(
                f"segflow: before the current publication, not published (it would rewind the CRM): "
                f"{summary['too_old']}"
            )
    return code


def runs_command(arguments: argparse.Namespace, config: SegflowConfig) -> int:
    from segflow.stores import open_stores

    store = open_stores(config.publish)[0]
    runs = store.read_runs(arguments.limit)
    if runs.empty:
        print(f"segflow: no runs recorded in {store.describe()}")
        return 0
    print(format_runs(runs))
    return 0


def format_runs(runs) -> str:
    """Recent runs as a fixed-width table: what on-call reads first."""
    import pandas as pd

    duration = (pd.to_datetime(runs["finished_at"]) - pd.to_datetime(runs["started_at"])).dt.total_seconds()
    table = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "as_of": pd.to_datetime(runs["as_of"]).dt.date,
            "status": runs["status"],
            "algorithm": runs["algorithm"].fillna("-"),
            "segments": runs["n_segments"].astype("Int64").astype(str).replace("<NA>", "-"),
            "gate": runs["gate_passed"].map({True: "passed", False: "failed"}).fillna("-"),
            "seconds": duration.round(1),
            "message": runs["message"].map(one_line),
        }
    )
    return table.to_string(index=False)


def one_line(message: str | None, width: int = 100) -> str:
    """A run's message on one line (a contract failure lists its rules on several), cut to width."""
    text = " ".join(str(message or "").replace("\n- ", "; ").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def serve_command(arguments: argparse.Namespace, config: SegflowConfig) -> int:
    from segflow.deployments.serve import serve_deployments

    config_file = arguments.config
    if config_file is None:  # the demo: its config, as a file the served runs read
        import yaml

        config_file = demo_output(arguments.demo) / "demo-config.yaml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    elif arguments.overrides:
        print("segflow: serve takes no --set: the served runs read the config file as it is", file=sys.stderr)
        return 2
    serve_deployments(config_file, arguments.timezone, arguments.cron)
    return 0


FLOW_COMMANDS = ("run", "score", "backfill")  # they run flows, so they need a Prefect server
COMMANDS = {
    "run": run_command,
    "score": score_command,
    "backfill": backfill_command,
    "runs": runs_command,
    "serve": serve_command,
}


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.command == "data-docs":
        return data_docs_command(arguments)
    try:
        config = load_run_config(arguments.config, arguments.overrides, arguments.demo)
    except ConfigError as error:
        print(f"segflow: {error}", file=sys.stderr)
        return error.exit_code
    # an unattended or air-gapped run has no business phoning home
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # without PREFECT_API_URL each run starts a temporary server on the shared local database; two
    # runs started together (one then waits for the other's writer slot) need more than the 20 s default
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # the temporary server need not register Prefect's block types in its database: a run loads only blocks
    # (Secrets) a user saved, and saving registers their type; registering them all costs seconds
    os.environ.setdefault("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", "false")
    if "as_of" in arguments:
        arguments.as_of = demo_as_of(arguments)
    return get_ready(arguments, config) or COMMANDS[arguments.command](arguments, config)


def get_ready(arguments: argparse.Namespace, config: SegflowConfig) -> int:
    """Write a demo's data and, without a Prefect server, import what the run will use, both while
    Prefect's temporary server starts (segflow/warm_start.py); then wait for it. Returns 1 if it
    did not start, else 0."""
    from segflow.warm_start import import_modules, modules_the_run_uses, start_temporary_server

    server = start_temporary_server() if arguments.command in FLOW_COMMANDS else None
    if server is not None:
        print(
            "segflow: no PREFECT_API_URL: starting Prefect's temporary server for this run "
            "(a running server starts runs sooner)",
            file=sys.stderr,
        )
    try:
        if arguments.config is None and arguments.command != "runs":
            write_demo_data(arguments.demo)
        if server is None:
            return 0
        if arguments.command in ("run", "backfill"):
            import_modules(modules_the_run_uses(config))
        failure = server.wait()
    except BaseException:  # no run follows: its server stops with this process
        if server is not None:
            server.stop()
        raise
    if failure is None:
        return 0
    server.stop()
    print(
        f"segflow: Prefect's temporary server did not start: {type(failure).__name__}: {failure}",
        file=sys.stderr,
    )
    return 1


def command() -> int:
    """The `segflow` command: `main` in a process of its own, which ends when it returns.

    A run leaves about 450,000 objects (Prefect, Great Expectations, pandas, scikit-learn) that the
    interpreter's garbage collection at exit traversed for 1.2-1.5 s, to free memory the OS takes back
    anyway (benchmarks/RESULTS.md). Frozen (`gc.freeze`), they are left to the OS. Before that only
    what the flow starts with is frozen (`segflow.process_memory`), nothing while it runs: a frozen
    reference cycle is never freed, and Great Expectations' validator holds the checked table in one,
    which a backfill of many nights would pile up. The memory a stage frees is kept for the next."""
    own_the_process()
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(command())
