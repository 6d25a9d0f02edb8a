"""Closed-loop load from wrk (the distribution's package), replaying a signed pool file.

The result has the same shape as bench.loadgen's, so scenarios need not care which tool ran.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.loadgen import parse_args as parse_loadgen_args
from bench.procs import BenchError

SCRIPT = Path(__file__).with_name("wrk_pool.lua")
MARKER = "BENCH_JSON "


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(
    url: str,
    pool: Path,
    *,
    duration: float,
    concurrency: int,
    threads: int = 1,
    timeout: float = 10.0,
) -> dict[str, object]:
    executable = wrk_path()
    if executable is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    seconds = max(1, round(duration))
    argv = [
        executable,
        f"-t{threads}",
        f"-c{max(concurrency, threads)}",
        f"-d{seconds}s",
        f"--timeout={max(1, round(timeout))}s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        str(pool),
        str(threads),
    ]
    try:
        done = subprocess.run(  # noqa: S603 - the distribution's wrk, loopback URL
            argv, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {seconds + 60}s") from exc
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    raw = json.loads(line[len(MARKER) :])
    errors = raw["errors"]
    connection_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    requests = int(raw["requests"])
    latency = {key: value / 1000.0 for key, value in raw["latency_us"].items()}
    return {
        "tool": "wrk",
        "mode": "concurrency",
        "rate_target": None,
        "concurrency": concurrency,
        "duration_s": raw["duration_us"] / 1e6,
        "requests": requests,
        "ok": requests - int(errors["status"]),
        "statuses": {"4xx/5xx": int(errors["status"])} if errors["status"] else {},
        "errors": connection_errors,
        "unanswered": 0,
        "timed_out": False,
        "pool_wrapped": raw["pool_wraps"] > 0,
        "events_reported": None,
        "latency_ms": latency if requests else {},
        "sent": None,
    }


def run_python_loadgen(
    url: str,
    pool: Path,
    *,
    duration: float,
    concurrency: int | None = None,
    rate: float | None = None,
    warmup: float = 0.0,
    record: bool = False,
    max_connections: int = 64,
    count: int = 0,
    grace: float = 15.0,
    out_dir: Path,
) -> dict[str, object]:
    """Run bench.loadgen in its own process and return its JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"loadgen-{pool.stem}-{time.monotonic_ns()}.json"
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        url,
        "--pool",
        str(pool),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--max-connections",
        str(max_connections),
        "--out",
        str(out),
        "--count",
        str(count),
        "--grace",
        str(grace),
    ]
    if rate:
        argv += ["--rate", str(rate)]
    else:
        argv += ["--concurrency", str(concurrency or 32)]
    if record:
        argv.append("--record")
    parse_loadgen_args(argv[3:])  # fail here, not in the child, on a bad option
    bound = warmup + duration + 60
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(  # noqa: S603
            argv, capture_output=True, text=True, timeout=bound, check=False, cwd=root
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"the load generator did not finish within {bound:.0f}s") from exc
    if done.returncode != 0 or not out.exists():
        raise BenchError(f"the load generator failed: {done.stderr.strip()[-300:]}")
    result: dict[str, object] = json.loads(out.read_text())
    out.unlink()
    return result
