"""The printed table and the targets of the issue, from a run's JSON document."""

from __future__ import annotations

import math
from typing import Any

from bench.stats import median_of

Row = dict[str, Any]


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _fig(row: Row, name: str, digits: int = 0) -> str:
    """`median [min–max]` (or just the median for a single run)."""
    value = row.get(name)
    if not isinstance(value, dict):
        return _num(value, digits)
    median = _num(value.get("median"), digits)
    if value.get("runs", 0) < 2:
        return median
    return f"{median} [{_num(value.get('min'), digits)}–{_num(value.get('max'), digits)}]"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


TARGET_NAMES = {
    "bare": "(a) bare ASGI",
    "verify": "(b) ASGI verify+parse",
    "fastapi_commit": "(c) FastAPI commit/req",
    "frontdesk": "Frontdesk (frontdesk api)",
}


def _failed(rows: list[Row], key: str) -> list[str]:
    return [
        f"  FAILED {row.get(key, '')}: {row.get('error')}"
        for row in rows
        if row.get("status") == "failed"
    ]


def render(document: dict[str, Any]) -> str:
    parts: list[str] = []
    meta = document.get("machine", {})
    parts.append(
        f"Frontdesk benchmarks — {document.get('started_at', '')} — "
        f"{meta.get('cpus', '?')} CPUs ({meta.get('cpu_model', '?')}), "
        f"{meta.get('memory', '?')} RAM, Python {meta.get('python', '?')}"
        + ("  [QUICK MODE: not a measurement]" if document.get("quick") else "")
    )
    scenarios = document.get("scenarios", {})
    for name, renderer in RENDERERS.items():
        result = scenarios.get(name)
        if result is None:
            continue
        parts.append("")
        if result.get("status") == "failed" and "rows" not in result:
            parts.append(f"{TITLES[name]}\n  FAILED: {result.get('error')}")
            continue
        if result.get("status") == "skipped":
            parts.append(f"{TITLES[name]}\n  skipped: {result.get('error')}")
            continue
        parts.append(renderer(result, document))
        if result.get("load_average"):
            before, after = result["load_average"]
            parts.append(
                f"  ({result.get('seconds')} s; 1-min load average {before} before, {after} after)"
            )
    targets = document.get("targets") or []
    if targets:
        parts.append("")
        parts.append("Targets")
        parts.append(
            _table(
                ["target", "measured", "status"],
                [[t["target"], t["measured"], t["status"]] for t in targets],
            )
        )
    return "\n".join(parts)


TITLES = {
    "intake": "Intake at fixed concurrency",
    "latency": "Intake latency at a fixed rate (open loop), SQLite",
    "e2e": "End to end: POST → reply at the fake Graph API (SQLite, frontdesk serve)",
    "drain": "Drain of queued events",
    "tenants": "Tenants: per-event worker cost by connected doctors",
    "memory": "Memory: frontdesk serve draining (SQLite)",
}


def _render_intake(result: Row, document: dict[str, Any]) -> str:
    config = document.get("config", {})
    rows = [
        [
            row["payload"],
            TARGET_NAMES.get(row["target"], row["target"]),
            row["database"],
            _fig(row, "deliveries_per_s"),
            _fig(row, "events_per_s"),
            _fig(row, "p50_ms", 1),
            _fig(row, "p99_ms", 1),
            _num(median_of(row, "server_cpu_pct")),
        ]
        for row in result["rows"]
        if row.get("status") == "ok"
    ]
    tool = next((row["runs"][0]["tool"] for row in result["rows"] if row.get("runs")), "?")
    text = [
        f"{TITLES['intake']} ({config.get('concurrency')} connections, {tool}, "
        f"{config.get('intake_duration')} s per run; "
        f"median [min–max] of {config.get('runs')} runs)",
        _table(
            ["payload", "target", "db", "deliveries/s", "events/s", "p50 ms", "p99 ms", "CPU %"],
            rows,
        ),
    ]
    text += _failed(result["rows"], "target")
    if result.get("ratios"):
        text.append("")
        text.append("Frontdesk / baseline (deliveries/s, medians)")
        text.append(
            _table(
                ["db", "payload", "/(a)", "/(b)", "/(c)"],
                [
                    [
                        r["database"],
                        r["payload"],
                        _num(r.get("bare"), 3),
                        _num(r.get("verify"), 3),
                        _num(r.get("fastapi_commit"), 3),
                    ]
                    for r in result["ratios"]
                ],
            )
        )
    text += [f"  skipped {reason}" for reason in result.get("skipped", [])]
    return "\n".join(text)


def _render_latency(result: Row, document: dict[str, Any]) -> str:
    rows = [
        [
            row["server"],
            _num(row.get("rate")),
            _fig(row, "achieved_per_s"),
            _fig(row, "p50_ms", 1),
            _fig(row, "p95_ms", 1),
            _fig(row, "p99_ms", 1),
            _fig(row, "failed_requests"),
        ]
        for row in result["rows"]
        if row.get("status") == "ok"
    ]
    text = [
        f"{TITLES['latency']}, single-message deliveries",
        _table(
            [
                "server",
                "offered/s",
                "answered 2xx/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "failed/timed out",
            ],
            rows,
        ),
    ]
    return "\n".join(text + _failed(result["rows"], "server"))


def _render_e2e(result: Row, document: dict[str, Any]) -> str:
    rows = []
    for row in result["rows"]:
        if row.get("status") != "ok":
            continue
        failed = str(row.get("failed_requests", 0))
        if row["load"].startswith("maximum"):
            rows.append(
                [
                    row["load"],
                    _fig(row, "replies_per_s", 1) + " replies/s",
                    "-",
                    "-",
                    "-",
                    f"{row['sent'] - row['replied']}",
                    failed,
                ]
            )
            continue
        rows.append(
            [
                row["load"],
                _num(row.get("rate"), 1) + "/s",
                _fig(row, "p50_ms", 1),
                _fig(row, "p95_ms", 1),
                _fig(row, "p99_ms", 1),
                str(row.get("missing", 0)),
                failed,
            ]
        )
    text = [
        TITLES["e2e"],
        _table(["load", "rate", "p50 ms", "p95 ms", "p99 ms", "no reply", "POST not 2xx"], rows),
    ]
    return "\n".join(text + _failed(result["rows"], "load"))


def _render_drain(result: Row, document: dict[str, Any]) -> str:
    rows = []
    for row in result["rows"]:
        if row.get("status") != "ok":
            continue
        rows.append(
            [
                row["database"],
                row["workers"],
                _num(row.get("queued")),
                _fig(row, "events_per_s", 1),
                _num(row.get("scaling_efficiency"), 2),
                _num(row.get("vs_2_workers"), 2),
                f"{_num(median_of(row, 'worker_cpu_pct'))} / "
                f"{_num(median_of(row, 'machine_cpu_pct'))}",
                f"{_fig(row, 'finished')} in ≤{_num(row.get('window_s'))} s"
                + ("" if row.get("complete") else " (window ended first)"),
            ]
        )
    text = [
        TITLES["drain"],
        _table(
            [
                "db",
                "workers",
                "queued",
                "events/s",
                "efficiency",
                "4 vs 2",
                "CPU % workers/machine",
                "finished",
            ],
            rows,
        ),
    ]
    text += _failed(result["rows"], "workers")
    text += [f"  skipped {reason}" for reason in result.get("skipped", [])]
    return "\n".join(text)


def _render_tenants(result: Row, document: dict[str, Any]) -> str:
    rows = [
        [
            row["database"],
            _num(row["doctors"]),
            _fig(row, "events_per_s", 1),
            _fig(row, "ms_per_event", 2),
        ]
        for row in result["rows"]
    ]
    text = [TITLES["tenants"], _table(["db", "doctors", "events/s", "ms/event"], rows)]
    text.append(f"ratio (most / fewest doctors, ms per event): {_num(result.get('ratio'), 2)}")
    return "\n".join(text)


def _render_memory(result: Row, document: dict[str, Any]) -> str:
    row = result["rows"][0]
    return "\n".join(
        [
            TITLES["memory"],
            f"RSS start {_num(row['rss_start_mib'], 1)} MiB, "
            f"end {_num(row['rss_end_mib'], 1)} MiB, "
            f"peak {_num(row['rss_peak_mib'], 1)} MiB; "
            f"growth {_num(row['growth_mib'], 1)} MiB over "
            f"{_num(row['finished'])} of {_num(row['queued'])} events"
            + ("" if row["complete"] else f" (window of {_num(row['window_s'])} s ended first)")
            + f"; {_num(row['growth_mib_per_1000_events'], 2)} MiB per 1,000 events in the "
            f"second half (→ {_num(row['growth_mib_projected_50k'], 1)} MiB projected over 50,000)",
        ]
    )


RENDERERS = {
    "intake": _render_intake,
    "latency": _render_latency,
    "e2e": _render_e2e,
    "drain": _render_drain,
    "tenants": _render_tenants,
    "memory": _render_memory,
}


# --- targets ---------------------------------------------------------------------------------


def _ok_rows(document: dict[str, Any], scenario: str) -> list[Row]:
    result = document.get("scenarios", {}).get(scenario) or {}
    return [row for row in result.get("rows", []) if row.get("status") == "ok"]


def _target(target: str, measured: str, met: bool | None, note: str = "") -> Row:
    status = "not measured" if met is None else ("met" if met else "MISSED")
    if note and met is not None:
        status = f"{status} ({note})"
    return {"target": target, "measured": measured, "status": status, "met": met}


def evaluate_targets(document: dict[str, Any]) -> list[Row]:
    targets: list[Row] = []
    intake = document.get("scenarios", {}).get("intake") or {}
    ratios = intake.get("ratios", [])  # computed from the rows that succeeded

    def ratio_target(database: str, baseline: str, bound: float, label: str) -> None:
        values = [
            (r["payload"], r.get(baseline))
            for r in ratios
            if r["database"] == database and not r.get("target")
        ]
        values = [(payload, value) for payload, value in values if value is not None]
        if not values:
            targets.append(_target(label, "-", None))
            return
        measured = ", ".join(f"{payload} {value:.3f}×" for payload, value in values)
        targets.append(_target(label, measured, all(value >= bound for _, value in values)))

    ratio_target("sqlite", "verify", 0.7, "intake ≥ 0.7 × (b), SQLite")
    ratio_target("postgresql", "verify", 0.5, "intake ≥ 0.5 × (b), PostgreSQL")
    for database in ("sqlite", "postgresql"):
        ratio_target(database, "fastapi_commit", 10.0, f"intake ≥ 10 × (c), {database}")

    latency = next(
        (r for r in _ok_rows(document, "latency") if r["server"] == "frontdesk serve"), None
    )
    if latency is None:
        targets.append(_target("p99 ≤ 50 ms at 1,000 deliveries/s, SQLite", "-", None))
    else:
        p99 = median_of(latency, "p99_ms")
        achieved = median_of(latency, "achieved_per_s")
        rate = latency.get("rate") or 0
        kept_up = achieved >= 0.98 * rate
        measured = f"p99 {p99:,.1f} ms, {achieved:,.0f} of {rate:,.0f}/s answered 2xx"
        note = "" if rate >= 1000 else f"offered only {rate:.0f}/s"
        targets.append(
            _target(
                "p99 ≤ 50 ms at 1,000 deliveries/s, SQLite (serve)",
                measured,
                p99 <= 50 and kept_up and rate >= 1000,
                note,
            )
        )

    low = next((r for r in _ok_rows(document, "e2e") if r["load"] == "low"), None)
    if low is None:
        targets.append(_target("end to end p50 ≤ 30 ms at low load", "-", None))
    else:
        p50 = median_of(low, "p50_ms")
        targets.append(
            _target(
                "end to end p50 ≤ 30 ms at low load",
                f"p50 {p50:,.1f} ms at {low['rate']:.0f}/s",
                p50 <= 30,
            )
        )

    drain_rows = [r for r in _ok_rows(document, "drain") if r["database"] == "postgresql"]
    two = next((r for r in drain_rows if r["processes"] == 2), None)
    four = next((r for r in drain_rows if r["processes"] == 4), None)
    if two is None:
        targets.append(_target("drain ≥ 1,000 events/s with 2 workers, PostgreSQL", "-", None))
    else:
        rate = median_of(two, "events_per_s")
        targets.append(
            _target(
                "drain ≥ 1,000 events/s with 2 workers, PostgreSQL",
                f"{rate:,.1f} events/s",
                rate >= 1000,
            )
        )
    if two is None or four is None:
        targets.append(_target("drain with 4 workers ≥ 1.5 × 2 workers", "-", None))
    else:
        ratio = median_of(four, "events_per_s") / median_of(two, "events_per_s")
        targets.append(
            _target("drain with 4 workers ≥ 1.5 × 2 workers", f"{ratio:.2f}×", ratio >= 1.5)
        )

    tenants = document.get("scenarios", {}).get("tenants") or {}
    if tenants.get("status") != "ok" or len(tenants.get("rows", [])) < 2:
        targets.append(_target("100,000 doctors ≤ 1.3 × per event of 10", "-", None))
    else:
        rows = tenants["rows"]
        many = rows[-1]["doctors"]
        targets.append(
            _target(
                "100,000 doctors ≤ 1.3 × per event of 10",
                f"{tenants['ratio']:.2f}× ({many:,} vs {rows[0]['doctors']:,} doctors)",
                tenants["ratio"] <= 1.3,
                "" if many >= 100_000 else f"only {many:,} doctors",
            )
        )

    memory = _ok_rows(document, "memory")
    if not memory:
        targets.append(_target("RSS growth ≤ 50 MB over a 50,000-event drain", "-", None))
    else:
        row = memory[0]
        mb = row["growth_mib"] * 1.048576
        if row["complete"] and row["queued"] >= 50_000:
            targets.append(
                _target("RSS growth ≤ 50 MB over a 50,000-event drain", f"{mb:,.1f} MB", mb <= 50)
            )
        else:
            projected = row["growth_mib_projected_50k"] * 1.048576
            targets.append(
                {
                    "target": "RSS growth ≤ 50 MB over a 50,000-event drain",
                    "measured": f"{mb:,.1f} MB over {row['finished']:,} events "
                    f"(→ {projected:,.1f} MB projected over 50,000)",
                    "status": "unverified (drain did not finish in its window)",
                    "met": None,
                }
            )
    return targets
