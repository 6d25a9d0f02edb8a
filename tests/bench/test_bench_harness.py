"""The benchmark harness measures something or says it failed.

One quick run of every scenario (`python -m bench.run --quick`, small sizes, about a minute)
must deliver events in each; a run against a Frontdesk that refuses every request (wrong app
secret, every POST 401) must be reported as a failure, not as a figure. Only structure and
non-zero counts are asserted, never timings: CI machines are small and shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bench.report import evaluate_targets, render
from bench.scenarios import SCENARIOS, require_delivered
from bench.stats import figure
from bench.workload import PatientIds, batches, read_pool, single_messages, write_pool
from frontdesk.testing.signing import signature_for

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("FRONTDESK_TEST_DATABASE_URL", "")
QUICK_BOUND_SECONDS = 300


def _run_bench(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "result.json"
    env = dict(os.environ)
    databases = "sqlite"
    if POSTGRES_URL:
        # The harness creates and drops its own databases on the same server.
        env["BENCH_POSTGRES_URL"] = str(
            make_url(POSTGRES_URL).set(database="postgres").render_as_string(False)
        )
        databases = "sqlite,postgresql"
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--databases",
            databases,
            "--out",
            str(out),
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=QUICK_BOUND_SECONDS,
        check=False,
    )
    assert out.exists(), done.stderr[-2000:]
    return done.returncode, json.loads(out.read_text()), done.stdout + done.stderr


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], str]:
    return _run_bench(tmp_path_factory.mktemp("bench"))


def _ok_rows(document: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    result = document["scenarios"][scenario]
    assert result["status"] == "ok", result
    rows = result["rows"]
    assert rows, scenario
    assert all(row["status"] == "ok" for row in rows), rows
    return rows


def test_quick_run_passes_and_covers_every_scenario(
    quick_run: tuple[int, dict[str, Any], str],
) -> None:
    code, document, output = quick_run
    assert code == 0, output[-3000:]
    assert set(document["scenarios"]) == set(SCENARIOS)
    assert document["quick"] is True
    assert document["machine"]["cpus"]
    assert "Targets" in output


def test_intake_delivered_events_to_every_target(
    quick_run: tuple[int, dict[str, Any], str],
) -> None:
    _, document, _ = quick_run
    rows = _ok_rows(document, "intake")
    targets = {(row["target"], row["payload"]) for row in rows}
    for target in ("bare", "verify", "frontdesk", "fastapi_commit"):
        assert {(target, "single"), (target, "batch")} <= targets
    for row in rows:
        assert row["deliveries_per_s"]["median"] > 0
        assert row["events_per_s"]["median"] > 0
        for run in row["runs"]:
            assert run["ok"] > 0
            if row["target"] == "frontdesk":
                assert run["stored_events"] >= run["ok"]
    ratios = document["scenarios"]["intake"]["ratios"]
    assert ratios
    assert all(entry["verify"] and entry["verify"] > 0 for entry in ratios)


def test_latency_and_end_to_end_got_answers(quick_run: tuple[int, dict[str, Any], str]) -> None:
    _, document, _ = quick_run
    for row in _ok_rows(document, "latency"):
        assert all(run["ok"] > 0 for run in row["runs"])
        assert row["p99_ms"]["median"] > 0
    rows = _ok_rows(document, "e2e")
    assert rows[0]["replied"] > 0
    for row in rows[1:]:
        assert all(run["replied"] > 0 for run in row["runs"])
        assert row["p50_ms"]["median"] > 0


def test_drain_tenants_and_memory_processed_events(
    quick_run: tuple[int, dict[str, Any], str],
) -> None:
    _, document, _ = quick_run
    for row in _ok_rows(document, "drain"):
        assert row["events_per_s"]["median"] > 0
        assert all(run["finished"] > 0 for run in row["runs"])
        assert all("processed:greeting" in run["outcomes"] for run in row["runs"])
    tenants = _ok_rows(document, "tenants")
    assert len(tenants) == 2
    assert tenants[0]["doctors"] < tenants[1]["doctors"]
    assert all(row["events_per_s"]["median"] > 0 for row in tenants)
    (memory,) = _ok_rows(document, "memory")
    assert memory["finished"] > 0
    assert memory["rss_start_mib"] > 0


def test_targets_are_evaluated_from_the_run(quick_run: tuple[int, dict[str, Any], str]) -> None:
    _, document, _ = quick_run
    targets = document["targets"]
    assert len(targets) >= 9
    assert all({"target", "measured", "status"} <= set(target) for target in targets)


def test_a_target_that_refuses_every_request_is_a_failure(tmp_path: Path) -> None:
    code, document, output = _run_bench(
        tmp_path, "--only", "intake", "--wrong-secret", "--databases", "sqlite"
    )
    assert code == 1, output[-3000:]
    intake = document["scenarios"]["intake"]
    assert intake["status"] == "failed"
    frontdesk = [row for row in intake["rows"] if row["target"] == "frontdesk"]
    assert frontdesk
    assert all(row["status"] == "failed" for row in frontdesk)
    assert all("401" in row["error"] for row in frontdesk)
    assert not any("deliveries_per_s" in row for row in frontdesk)
    # The baselines, signed correctly, still measured: only the broken target failed.
    assert any(row["status"] == "ok" for row in intake["rows"] if row["target"] == "verify")
    assert "FAILED" in render(document)
    assert not intake["ratios"]


# --- the checks themselves, without servers -----------------------------------------------


def _result(**overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"requests": 10, "ok": 10, "statuses": {"200": 10}, "errors": 0}
    result.update(overrides)
    return result


def test_require_delivered_refuses_runs_that_measured_nothing() -> None:
    require_delivered(_result(), "fine", strict=True)
    with pytest.raises(Exception, match="no request succeeded"):
        require_delivered(_result(ok=0, statuses={"401": 10}), "x", strict=False)
    with pytest.raises(Exception, match="no request succeeded"):
        require_delivered(_result(requests=0, ok=0, statuses={}, errors=5), "x", strict=False)
    with pytest.raises(Exception, match="refused"):
        require_delivered(_result(ok=9, statuses={"200": 9, "400": 1}), "x", strict=False)
    with pytest.raises(Exception, match="non-2xx"):
        require_delivered(_result(ok=9, statuses={"200": 9, "503": 1}), "x", strict=True)
    require_delivered(_result(ok=9, statuses={"200": 9, "503": 1}), "overload", strict=False)
    many = _result(requests=1000, ok=999, statuses={"200": 999, "500": 1})
    require_delivered(many, "one lock timeout in a thousand is reported, not fatal", strict=True)


def test_figure_is_the_median_with_its_spread() -> None:
    value = figure([10.0, 30.0, 20.0])
    assert value["median"] == 20.0
    assert (value["min"], value["max"], value["runs"]) == (10.0, 30.0, 3)
    assert value["spread_pct"] == pytest.approx(100.0)


def test_pools_are_signed_and_unique(tmp_path: Path) -> None:
    patients = PatientIds()
    singles = write_pool(tmp_path / "s.txt", single_messages(20, doctors=3, patients=patients), "k")
    batch = write_pool(tmp_path / "b.txt", batches(2, doctors=10, patients=patients), "k")
    assert (singles.requests, singles.events_per_request) == (20, 1)
    assert batch.events_per_request == 50
    lines = read_pool(singles.path) + read_pool(batch.path)
    assert len({body for _, _, body in lines}) == len(lines)
    assert all(signature == signature_for(body, "k") for _, signature, body in lines)
    document = json.loads(read_pool(batch.path)[0][2])
    assert len({entry["id"] for entry in document["entry"]}) == 5


def test_targets_without_measurements_are_not_met() -> None:
    targets = evaluate_targets({"scenarios": {}})
    assert targets
    assert all(target["met"] is None for target in targets)
