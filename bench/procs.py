"""Child processes of a benchmark run: start on loopback, wait until ready, always stop.

Every process is started in its own session (process group) and registered with a
`ProcessGroup`; leaving the group stops them all (SIGTERM, then SIGKILL), so a failed or
interrupted run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


class BenchError(RuntimeError):
    """A scenario could not produce a valid measurement; it is reported as failed."""


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0, 0.0
    values = [int(value) for value in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


class CpuMeter:
    """CPU use of some processes and of the machine between start() and stop(), in % of one
    core (processes) and % of all cores (machine)."""

    def __init__(self, processes: list[Process]) -> None:
        self._processes = processes
        self._began = 0.0
        self._own = 0.0
        self._machine = (0.0, 0.0)

    def start(self) -> CpuMeter:
        self._began = time.monotonic()
        self._own = sum(process.cpu_seconds() for process in self._processes)
        self._machine = machine_cpu()
        return self

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._began, 1e-9)
        own = sum(process.cpu_seconds() for process in self._processes) - self._own
        busy, total = machine_cpu()
        machine = (busy - self._machine[0]) / max(total - self._machine[1], 1e-9) * 100
        return {"process_cpu_pct": own / wall * 100, "machine_cpu_pct": machine}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def python() -> str:
    return sys.executable


def frontdesk_command() -> list[str]:
    """The `frontdesk` script of this interpreter's environment, as a user would run it."""
    script = Path(sys.executable).parent / "frontdesk"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from frontdesk.cli import main; main()"]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        return self.popen.returncode

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (0 once it is gone)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> tuple[int, int] | None:
        """(current RSS, peak RSS) in KiB from /proc, or None once the process is gone."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        values = {}
        for line in status.splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        if "VmRSS" not in values:
            return None
        return values["VmRSS"], values.get("VmHWM", values["VmRSS"])


@dataclass
class ProcessGroup:
    """Owns the processes of one scenario; `close()` stops them all, newest first."""

    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        with log_path.open("ab") as log:
            popen = subprocess.Popen(  # noqa: S603 - our own interpreter and tools
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        process = Process(name=name, popen=popen, log_path=log_path)
        self.processes.append(process)
        return process

    def stop(self, process: Process) -> int | None:
        code = process.stop()
        if process in self.processes:
            self.processes.remove(process)
        return code

    def close(self) -> None:
        while self.processes:
            self.processes.pop().stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float,
    input_text: str | None = None,
) -> str:
    """Run a short command to completion (bounded); its stdout, or BenchError with its output."""
    try:
        done = subprocess.run(  # noqa: S603
            list(argv),
            env={**os.environ, **(env or {})},
            cwd=cwd,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise BenchError(f"{' '.join(argv[:3])} failed ({done.returncode}): {' | '.join(tail)}")
    return done.stdout


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="GET")  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def wait_until_ready(process: Process, url: str, *, timeout: float, ok: int = 200) -> None:
    """Poll `url` until it answers `ok`; fail early if the process exits first."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not process.alive():
            raise BenchError(
                f"{process.name} exited ({process.popen.returncode}) before it was ready:\n"
                + process.log_tail()
            )
        try:
            status, _ = http_get(url, timeout=1.0)
            if status == ok:
                return
            last = f"status {status}"
        except OSError as error:
            last = type(error).__name__
        time.sleep(0.05)
    raise BenchError(f"{process.name} not ready at {url} within {timeout:.0f}s ({last})")


@contextlib.contextmanager
def deadline_guard(seconds: float, what: str) -> Iterator[None]:
    """Raise BenchError in the main thread if the block runs longer than `seconds`."""

    def expired(_signum: int, _frame: object) -> None:
        raise BenchError(f"{what} exceeded its time bound of {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
