"""Run the benchmarks: `python -m bench.run` (what `make bench` does).

Every scenario runs on loopback, each bounded in time; the table is printed and the whole
result (every run of every figure) is written as JSON. The exit status is 1 when any scenario
or row failed, so a broken target is never mistaken for a measurement.

    python -m bench.run                       # everything, as documented (~15 min on 2 cores)
    python -m bench.run --quick               # small sizes, ~1 min: checks the harness only
    python -m bench.run --only intake,drain   # some scenarios
    python -m bench.run --wrong-secret        # self-check: Frontdesk must fail every run (401)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import BenchError, deadline_guard
from bench.report import evaluate_targets, render
from bench.scenarios import SCENARIOS, Bench, Config
from bench.wrkload import wrk_path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
# Upper bounds per scenario (seconds); every step inside has its own, smaller bound too.
BOUNDS = {"intake": 480, "latency": 240, "drain": 480, "memory": 200, "tenants": 300, "e2e": 300}
QUICK_BOUNDS = {"intake": 60, "latency": 30, "drain": 60, "memory": 30, "tenants": 60, "e2e": 60}


def machine() -> dict[str, Any]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": _first_line([wrk_path() or "wrk", "--version"]) if wrk_path() else None,
        "postgresql": _first_line(["psql", "--version"]) if shutil.which("psql") else None,
        "git": _first_line(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
    }
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        info["packages"] = {
            name: version(name)
            for name in ("uvicorn", "starlette", "fastapi", "sqlalchemy", "aiosqlite", "psycopg")
        }
    return info


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; checks the harness")
    parser.add_argument("--only", help=f"comma-separated scenarios of {','.join(SCENARIOS)}")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; quick 1)")
    parser.add_argument("--drain-events", type=int, help="queued events for drain and memory")
    parser.add_argument(
        "--wrong-secret",
        action="store_true",
        help="self-check: start Frontdesk with another app secret (all 401)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"JSON output (default {DEFAULT_OUT})"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs, pools)")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {
        "loadgen": args.loadgen,
        "databases": tuple(part.strip() for part in args.databases.split(",") if part.strip()),
        "wrong_secret": args.wrong_secret,
    }
    if args.runs:
        overrides["runs"] = args.runs
    if args.drain_events:
        overrides["drain_events"] = args.drain_events
    return Config.quick_config(**overrides) if args.quick else Config(**overrides)


def run(config: Config, names: list[str], run_dir: Path) -> dict[str, Any]:
    bench = Bench(config=config, run_dir=run_dir)
    document: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.run " + " ".join(sys.argv[1:]) if sys.argv else "",
        "quick": config.quick,
        "config": dict(config.__dict__.items()),
        "machine": machine(),
        "scenarios": {},
    }
    bounds = QUICK_BOUNDS if config.quick else BOUNDS
    began = time.monotonic()
    try:
        for name in names:
            started = time.monotonic()
            load_before = os.getloadavg()[0]
            print(f"[bench] {name} …", file=sys.stderr, flush=True)
            try:
                with deadline_guard(bounds[name], f"scenario {name}"):
                    result = SCENARIOS[name](bench)
                result["status"] = "failed" if _has_failed_rows(result) else "ok"
            except BenchError as error:
                result = {"status": "failed", "error": str(error)}
            except Exception as error:  # a harness bug is a failure, reported, never a figure
                result = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
            result["seconds"] = round(time.monotonic() - started, 1)
            # Other work on the machine skews every figure: keep the load average with them.
            result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            document["scenarios"][name] = result
            print(
                f"[bench] {name}: {result['status']} in {result['seconds']} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        bench.close()
    document["seconds"] = round(time.monotonic() - began, 1)
    document["targets"] = evaluate_targets(document)
    return document


def _has_failed_rows(result: dict[str, Any]) -> bool:
    return any(row.get("status") == "failed" for row in result.get("rows", []))


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = build_config(args)
    names = list(SCENARIOS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    run_dir = Path(tempfile.mkdtemp(prefix="frontdesk-bench-"))
    try:
        document = run(config, names, run_dir)
    finally:
        if args.keep:
            print(f"[bench] run directory kept: {run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    out = args.out or DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=str))
    table = render(document)
    out.with_suffix(".txt").write_text(table + "\n")
    print(table)
    print(f"\n[bench] JSON written to {out}", file=sys.stderr)
    failed = [name for name, result in document["scenarios"].items() if result["status"] != "ok"]
    if failed:
        print(f"[bench] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
