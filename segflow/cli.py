"""The `segflow` command line: run the nightly flow on a config file or on the embedded demo."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from segflow.config import SegflowConfig, build_config, read_config_file
from segflow.errors import ConfigError, SegflowError

DEMO_OUTPUT = Path("segflow_output")


def parse_as_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--as-of expects YYYY-MM-DD, got {text!r}") from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="segment the customer base and publish the segments")
    run.add_argument("--config", type=Path, help="YAML config file (default: the embedded demo)")
    run.add_argument(
        "--as-of",
        type=parse_as_of,
        default=None,
        help="business date of the run, YYYY-MM-DD (default: today)",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set clustering.algorithm=hdbscan",
    )
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
    from segflow.tasks.quality import build_data_docs

    index = build_data_docs(files, arguments.out or arguments.results / "data_docs")
    print(f"segflow: Data Docs at {index} (its pages load their styles from public CDNs)")
    return 0


def load_run_config(config_path: Path | None, overrides: list[str]) -> SegflowConfig:
    """The validated config: the file's, or the demo's (generating the demo data once)."""
    if config_path is not None:
        return build_config(read_config_file(config_path), overrides)
    from segflow.demo import demo_config, ensure_demo_data

    config = build_config(demo_config(DEMO_OUTPUT.resolve()), overrides)
    ensure_demo_data(DEMO_OUTPUT.resolve() / "demo_data")
    return config


def run_command(arguments: argparse.Namespace) -> int:
    try:
        config = load_run_config(arguments.config, arguments.overrides)
    except ConfigError as error:
        print(f"segflow: {error}", file=sys.stderr)
        return error.exit_code
    # an unattended or air-gapped run has no business phoning home
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from segflow.flows.segmentation import segmentation_flow

    try:
        summary = segmentation_flow(config=config, as_of=arguments.as_of)
    except SegflowError as error:
        print(f"\nsegflow: run failed (exit {error.exit_code}): {error}", file=sys.stderr)
        if error.exit_code in (3, 4):
            print(
                "segflow: nothing new was published; the last good publication is still current.",
                file=sys.stderr,
            )
        return error.exit_code
    except Exception as error:  # an unexpected failure: exit 1 with the cause on one line
        print(f"\nsegflow: run failed (exit 1): {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(
        f"\nsegflow: published {summary['customers']:,} customers in {summary['segments']} segments "
        f"as of {summary['as_of']} (run {summary['run_id']}; {summary['changes']:,} changes, "
        f"{summary['quarantined_rows']:,} quarantined rows)"
    )
    for target in summary["targets"]:
        print(f"segflow: output: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    commands = {"run": run_command, "data-docs": data_docs_command}
    return commands[arguments.command](arguments)


if __name__ == "__main__":
    sys.exit(main())
