"""``verity.cli.supervisor``: forked workers (plain functions here), their start order,
restarts with a budget, and the graceful stop on SIGTERM. ``verity serve`` itself is
covered by ``test_serve_workers.py``."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from verity.cli import supervisor
from verity.cli.supervisor import BindError, Supervisor, bind_listener, describe

Ready = Callable[[], None]


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "FIRST_BACKOFF_SECONDS", 0.02)


def mark(folder: Path, name: str) -> None:
    (folder / name).write_text(str(os.getpid()))


def signal_when(paths: list[Path], signum: int = signal.SIGTERM) -> threading.Thread:
    """SIGTERM to this process (the supervisor) once every path exists."""

    def wait_and_signal() -> None:
        deadline = time.monotonic() + 30
        while not all(path.exists() for path in paths) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=wait_and_signal, daemon=True)
    thread.start()
    return thread


def test_sigterm_stops_every_worker_gracefully(tmp_path: Path) -> None:
    """The supervisor forwards SIGTERM; each worker's own handler runs (its graceful
    stop) and the supervisor exits 0. Worker 1 starts only after worker 0 is ready."""

    def main(index: int, ready: Ready) -> int:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        if index == 1:
            assert (tmp_path / "ready-0").exists()  # started after worker 0 was ready
        ready()
        mark(tmp_path, f"ready-{index}")
        stop.wait(30)
        mark(tmp_path, f"stopped-{index}")
        return 0

    signal_when([tmp_path / "ready-0", tmp_path / "ready-1"], signal.SIGINT)
    stopping: list[bool] = []
    assert Supervisor(2, main, on_stop=lambda: stopping.append(True)).run() == 0
    assert stopping == [True]
    assert (tmp_path / "stopped-0").exists()
    assert (tmp_path / "stopped-1").exists()


def test_worker_0_failing_at_start_fails_the_supervisor_without_the_others(
    tmp_path: Path,
) -> None:
    def main(index: int, ready: Ready) -> int:
        mark(tmp_path, f"started-{index}")
        return 3

    assert Supervisor(2, main).run() == 1
    assert (tmp_path / "started-0").exists()
    assert not (tmp_path / "started-1").exists()


def test_a_worker_failing_before_ready_is_retried_then_given_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def main(index: int, ready: Ready) -> int:
        if index == 0:
            ready()
            time.sleep(30)  # until the supervisor's SIGTERM (default action)
            return 0
        with (tmp_path / "attempts").open("a") as out:
            out.write("x")
        return 3

    with caplog.at_level(logging.INFO, logger="verity.serve"):
        assert Supervisor(2, main).run() == 1
    assert (tmp_path / "attempts").read_text() == "x" * supervisor.MAX_START_FAILURES
    assert "failed 3 times in a row while starting (exit 3)" in caplog.text
    assert "all workers stopped" in caplog.text


def test_a_worker_dying_right_after_ready_counts_as_failing_to_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ready, then dead within ``STARTUP_SECONDS`` (say, the server could not load its
    TLS context): three in a row stop everything, however long the backoff grew."""

    def main(index: int, ready: Ready) -> int:
        ready()
        if index == 0:
            time.sleep(30)
            return 0
        return 1

    with caplog.at_level(logging.INFO, logger="verity.serve"):
        assert Supervisor(2, main).run() == 1
    assert "worker 1 failed 3 times in a row while starting (exit 1)" in caplog.text


def test_a_crashing_worker_is_restarted_within_a_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that dies after it was ready is restarted (logged, with its status)
    until ``MAX_RESTARTS`` restarts fall in the window; then everything stops."""
    monkeypatch.setattr(supervisor, "MAX_RESTARTS", 3)
    monkeypatch.setattr(supervisor, "STARTUP_SECONDS", 0.0)  # not failures to start

    def main(index: int, ready: Ready) -> int:
        ready()
        if index == 0:
            time.sleep(30)
            return 0
        with (tmp_path / "runs").open("a") as out:
            out.write("x")
        os.kill(os.getpid(), signal.SIGKILL)
        return 0  # pragma: no cover

    with caplog.at_level(logging.INFO, logger="verity.serve"):
        assert Supervisor(2, main).run() == 1
    assert (tmp_path / "runs").read_text() == "x" * 4  # the first run and three restarts
    assert caplog.text.count("worker 1 exited (signal SIGKILL); restarting") == 3
    assert "4 worker restarts within 60 s" in caplog.text


def test_bind_listener_names_the_address_it_cannot_take() -> None:
    sock = bind_listener("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert sock.get_inheritable()
        with pytest.raises(BindError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_listener("127.0.0.1", port)
    finally:
        sock.close()


def test_describe_names_exit_codes_and_signals() -> None:
    assert describe(1 << 8) == "exit 1"
    assert describe(signal.SIGKILL) == "signal SIGKILL"
