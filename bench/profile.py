"""Profile Frontdesk under load with py-spy: `python -m bench.profile`.

Starts `frontdesk api` (intake; default) or a worker draining a queue (`--target worker`) on
a fresh database, drives it from a separate process, records it with py-spy (only samples that
hold the GIL, so waiting is not counted) and prints the top functions by share. Needs py-spy
(`pip install py-spy`) and permission to trace the child (root, or ptrace_scope 0).

    python -m bench.profile                          # intake, SQLite, single messages
    python -m bench.profile --database postgresql --payload batch
    python -m bench.profile --target worker --database postgresql
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.procs import (
    BenchError,
)
from bench.scenarios import WEBHOOK, Bench, Config, queue_events

CATEGORIES = (
    ("frontdesk/", "frontdesk"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("aiosqlite/", "driver (aiosqlite/sqlite3)"),
    ("sqlite3/", "driver (aiosqlite/sqlite3)"),
    ("psycopg/", "driver (psycopg)"),
    ("cryptography/", "encryption"),
    ("json/", "JSON"),
    ("structlog/", "logging"),
    ("logging/", "logging"),
    ("httpx", "HTTP client"),
    ("uvicorn/", "server (uvicorn, httptools)"),
    ("httptools", "server (uvicorn, httptools)"),
    ("asyncio/", "event loop"),
    ("uvloop", "event loop"),
    ("runners.py", "event loop"),
    ("selectors.py", "event loop"),
    ("starlette/", "Starlette/FastAPI"),
    ("fastapi/", "Starlette/FastAPI"),
)


def _category(frame: str) -> str:
    for needle, name in CATEGORIES:
        if needle in frame:
            return name
    return "other"


def _function(frame: str) -> str:
    """`name (path:line)` → `name (path)`: one entry per function, whatever the line."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize(raw: Path, *, top: int = 15) -> str:
    """Top functions by self share and by inclusive share, and self share by library."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame and not frame.startswith("thread")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        libraries[_category(frames[-1])] += count
        for function in {_function(frame) for frame in frames}:
            inclusive[function] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples holding the GIL", "", "self time by library:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in libraries.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", f"top {top} Frontdesk functions by inclusive time:"]
    mine = [
        (frame, n)
        for frame, n in inclusive.most_common()
        if "frontdesk/" in frame and "frontdesk/cli.py" not in frame
    ]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in mine[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", choices=("intake", "worker"), default="intake")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--payload", choices=("single", "batch"), default="single")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, help="also write the summary here")
    parser.add_argument(
        "--raw", type=Path, help="also keep py-spy's collapsed stacks here (for a flame graph)"
    )
    parser.add_argument(
        "--label",
        default="this checkout",
        help="what is profiled, for the summary's first line (say, the commit)",
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="frontdesk-profile-"))
    bench = Bench(config=Config(databases=(args.database,)), run_dir=run_dir)
    raw = run_dir / "profile.txt"
    try:
        with bench.group() as group:
            if args.target == "intake":
                instance = bench.instance(args.database, "profile")
                process, base = instance.start_server(group, mode="api")
                make = bench.singles if args.payload == "single" else bench.batches
                pool = make(40_000 if args.payload == "single" else 4_000, instance.app_secret)
            else:
                queue = queue_events(bench, args.database, "profile", 10_000)
                instance = queue.instance
                instance.graph_url = bench.fake_graph(group)
                if args.database == "sqlite":
                    process, base = instance.start_server(group, mode="serve")
                else:
                    process = instance.start_worker(group, name="worker")
                time.sleep(2)
            record = [
                py_spy,
                "record",
                "--gil",
                "--format",
                "raw",
                "-r",
                str(args.rate),
                "-d",
                str(args.seconds),
                "-p",
                str(process.pid),
                "-o",
                str(raw),
            ]
            spy = threading.Thread(
                target=subprocess.run,
                args=(record,),
                kwargs={"capture_output": True, "timeout": args.seconds + 60, "check": False},
            )
            spy.start()
            if args.target == "intake":
                time.sleep(0.5)
                result = bench.load(base + WEBHOOK, pool, duration=args.seconds + 1)
                rate = result["ok"] / result["duration_s"]
                what = (
                    f"intake, {args.label} ({args.database}, {args.payload}): "
                    f"{rate:,.0f} deliveries/s, p99 {result['latency_ms'].get('p99', 0):.1f} ms"
                )
            else:
                spy.join(args.seconds + 90)
                finished, span = instance.finish_span()
                rate = f"{(finished - 1) / span:,.1f} events/s" if span else "no events finished"
                what = f"worker, {args.label} ({args.database}): {rate}"
            spy.join(args.seconds + 90)
        if not raw.exists():
            raise BenchError("py-spy wrote nothing (is ptrace allowed?)")
        if args.raw:
            args.raw.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(raw, args.raw)
        summary = f"{what}\n{summarize(raw)}"
        print(summary)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(summary + "\n")
        return 0
    finally:
        bench.close()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
