"""Time the data-contract check (check_table) on large synthetic sources and print a Markdown table.

Run on demand, not in the test suite:
    python benchmarks/bench_quality.py [--cases customers:1000000 transactions:1000000 ...]

Each case runs in a child process of its own, so its peak memory is its own: the peak is the
child's resource.getrusage(RUSAGE_SELF).ru_maxrss (the whole process, input table included); the
parent stops a child that passes --max-rss-gb or --timeout (it reads /proc, so Linux only).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from segflow.demo import CHANNELS, COUNTRIES, DEMO_END, contracts_folder

DEFAULT_CASES = ["customers:1000000", "transactions:1000000", "transactions:10000000"]
GIB = 1024**3


def customer_table(n_rows: int, seed: int = 7) -> pd.DataFrame:
    """Customers shaped like segflow.demo's: 0.5% exported twice, 5% without age, 2% without channel."""
    rng = np.random.default_rng(seed)
    n_repeats = n_rows // 200
    n_customers = n_rows - n_repeats
    row_customer = np.concatenate([np.arange(n_customers), rng.integers(0, n_customers, n_repeats)])
    ids = _prefixed_numbers("C", row_customer + 1, 7)
    signup = np.datetime64(DEMO_END) - rng.integers(0, 1130, n_customers).astype("timedelta64[D]")
    age = rng.normal(40, 12, n_customers).clip(18, 90).round().astype("int64")
    columns = {
        "customer_id": ids,
        "email": pc.binary_join_element_wise(
            "customer", pc.cast(pa.array(row_customer + 1), pa.string()), "@example.com", ""
        ),
        "signup_date": pa.array(signup[row_customer], type=pa.date32()),
        "country": _categories(COUNTRIES, rng.integers(0, len(COUNTRIES), n_customers)[row_customer]),
        "acquisition_channel": _categories(
            CHANNELS, rng.integers(0, len(CHANNELS), n_customers)[row_customer], rng.random(n_rows) < 0.02
        ),
        "age": pa.array(age[row_customer], mask=rng.random(n_rows) < 0.05),
        "web_sessions_90d": pa.array(rng.poisson(15, n_customers)[row_customer]),
        "email_opens_90d": pa.array(rng.poisson(12, n_customers)[row_customer]),
        "email_clicks_90d": pa.array(rng.poisson(4, n_customers)[row_customer]),
    }
    return pa.table(columns).to_pandas().astype({"age": "Int64"})  # as the demo's Parquet reads back


def transaction_table(n_rows: int, n_customers: int = 1_000_000, seed: int = 11) -> pd.DataFrame:
    """Orders shaped like segflow.demo's: 0.02% loaded twice, 0.01% with a negative amount."""
    rng = np.random.default_rng(seed)
    n_repeats = n_rows // 5000
    n_orders = n_rows - n_repeats
    row_order = np.concatenate([np.arange(n_orders), rng.integers(0, n_orders, n_repeats)])
    seconds_ago = rng.integers(0, 730 * 86400, n_orders)
    order_ts = np.datetime64(DEMO_END + timedelta(days=1), "s") - seconds_ago.astype("timedelta64[s]")
    amount = np.maximum(np.round(rng.gamma(9.0, 10.0, n_orders), 2), 1.0)
    amount[rng.choice(n_orders, n_orders // 10000, replace=False)] *= -1
    columns = {
        "order_id": _prefixed_numbers("O", row_order + 1, 9),
        "customer_id": _prefixed_numbers("C", rng.integers(1, n_customers + 1, n_orders)[row_order], 7),
        "order_ts": pa.array(order_ts[row_order].astype("datetime64[us]")),
        "amount": pa.array(amount[row_order]),
        "sales_channel": _categories(
            ["web", "store", "app"], rng.choice(3, n_orders, p=[0.5, 0.3, 0.2])[row_order]
        ),
    }
    return pa.table(columns).to_pandas()


def _prefixed_numbers(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """prefix + the number left-padded with zeros to width digits, e.g. C0000042."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _categories(values: list[str], codes: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """Plain strings (as a Parquet source reads back), codes into values, null where missing."""
    indices = pa.array(codes.astype("int32"), mask=missing)
    return pa.DictionaryArray.from_arrays(indices, pa.array(values)).cast(pa.string())


def run_case(source: str, n_rows: int) -> dict:
    """One measurement, in this process: build the table, warm GX up, time check_table."""
    from segflow.tasks.quality import check_table

    contract = contracts_folder() / f"{source}.odcs.yaml"
    table = customer_table(n_rows) if source == "customers" else transaction_table(n_rows)
    check_table(table.head(100), contract, source)  # GX import and context, not part of the timing
    rss_before = _current_rss()
    started = time.perf_counter()
    report = check_table(table, contract, source)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "input_mib": table.memory_usage(deep=True).sum() / 2**20,
        "rss_before_gib": rss_before / GIB,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
        "failed_rules": sorted(o.rule for o in report.outcomes if not o.success),
        "quarantined": int(report.quarantine["row_number"].nunique()),
    }


def _current_rss() -> int:
    """This process's resident memory now, in bytes."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def _rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(source: str, n_rows: int, max_rss_gib: float, timeout: float) -> dict:
    """Run one case in a child process; stop it past the memory or time budget."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", f"{source}:{n_rows}"], stdout=subprocess.PIPE, text=True
    )
    started, highest = time.monotonic(), 0
    while child.poll() is None:
        try:
            highest = max(highest, _rss_of(child.pid))
        except OSError:  # the child ended between poll and read
            break
        elapsed = time.monotonic() - started
        if highest > max_rss_gib * GIB or elapsed > timeout:
            child.kill()
            child.wait()
            reason = f"over {max_rss_gib:g} GiB" if highest > max_rss_gib * GIB else f"over {timeout:g} s"
            return {"stopped": f"stopped {reason} after {elapsed:.0f} s (RSS {highest / GIB:.1f} GiB)"}
        time.sleep(0.2)
    output = child.stdout.read()
    if child.returncode != 0:
        return {"stopped": f"child failed with exit code {child.returncode}"}
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", nargs="+", default=DEFAULT_CASES, help="source:rows, e.g. customers:1000000"
    )
    parser.add_argument("--max-rss-gb", type=float, default=12.0)
    parser.add_argument(
        "--timeout", type=float, default=480.0, help="seconds per case, data generation included"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        source, n_rows = arguments.child.split(":")
        print(json.dumps(run_case(source, int(n_rows))), flush=True)
        return

    print(
        "| source | rows | input (MiB, pandas deep) | check_table (s) | rows/s | RSS before (GiB) "
        "| peak RSS (GiB, ru_maxrss) | failed rules | quarantined rows |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for case in arguments.cases:
        source, n_rows = case.split(":")
        n_rows = int(n_rows)
        result = measure(source, n_rows, arguments.max_rss_gb, arguments.timeout)
        if "stopped" in result:
            print(f"| {source} | {n_rows:,} | | {result['stopped']} | | | | | |", flush=True)
            continue
        print(
            f"| {source} | {n_rows:,} | {result['input_mib']:,.0f} | {result['seconds']:.1f} "
            f"| {n_rows / result['seconds']:,.0f} | {result['rss_before_gib']:.2f} "
            f"| {result['peak_rss_gib']:.2f} | {'; '.join(result['failed_rules']) or '-'} "
            f"| {result['quarantined']:,} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
