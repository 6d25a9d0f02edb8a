"""The harness test runs a quick benchmark (about a minute of load): only when asked for."""

from __future__ import annotations

import os

if not os.environ.get("FRONTDESK_BENCH_TESTS"):
    collect_ignore_glob = ["test_*.py"]
