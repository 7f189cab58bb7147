"""``verity serve`` with ``gateway.workers: N`` > 1: a supervisor and N forked workers.

The supervisor validates the configuration, binds every listening socket once (the
gateway's, and the plain-HTTP redirect listener's with ``gateway.tls``), and forks the
workers, which inherit the sockets and all accept on them (the pre-fork model of
gunicorn and ``uvicorn --workers``). Why not ``SO_REUSEPORT`` with each worker binding:
a port that cannot be bound fails once, in the supervisor, before anything starts; the
listening socket outlives a crashed worker, so connections queued on it wait for the
others instead of being reset; and the kernel never pins a connection to a worker that
is busy or restarting (``SO_REUSEPORT`` hashes each connection to one socket).

The supervisor holds no threads, event loop, store or audit connection: it forks from a
clean process, and each worker opens its own stores, audit writer and revocation watch.
Workers start one after the other for the first one: worker 0 must report ready (its
stores migrated, the login cookie key and IdP keys created, the revocations in force
loaded) before the others start, so first-start initialisation never races; if worker 0
fails before it is ready (a store that cannot be opened, revocations that cannot be
read, ...), the supervisor exits 1 at once instead of looping.

Crashes: a worker that exits while the supervisor is not stopping is logged and started
again after a backoff (0.5 s, doubling to 30 s; back to 0.5 s once a worker stayed up
``STABLE_SECONDS``). The supervisor gives up, stops the others and exits 1 when one slot
fails ``MAX_START_FAILURES`` times in a row while starting (before it was ready, or
within ``STARTUP_SECONDS`` of its start), or when ``MAX_RESTARTS`` restarts happen
within ``RESTART_WINDOW_SECONDS``. Each worker asks the kernel for SIGTERM when the
supervisor dies (``PR_SET_PDEATHSIG``), so a supervisor killed with ``kill -9`` does not
leave workers holding the port.

Stopping: SIGTERM or SIGINT to the supervisor is forwarded as SIGTERM to every worker,
which stops gracefully (uvicorn finishes in-flight requests, then the lifespan closes
the audit log with its final checkpoint, ``Gateway.on_shutdown``); a worker still alive
``grace_seconds`` later is killed. The supervisor exits 0 when every worker stopped
cleanly (exit 0, or the SIGTERM/SIGINT uvicorn re-raises after its graceful stop).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("verity.serve")

MAX_START_FAILURES = 3
STARTUP_SECONDS = 10.0  # a worker dying this soon after its start failed to start
MAX_RESTARTS = 10
RESTART_WINDOW_SECONDS = 60.0
STABLE_SECONDS = 30.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
CLEAN_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Ready = Callable[[], None]
"""Called by a worker once it is ready to serve (its stores, keys and revocations
loaded); the supervisor starts the next workers only then."""
WorkerMain = Callable[[int, Ready], int]
"""Runs in the forked worker: ``(index, ready) -> exit code``."""


class BindError(OSError):
    """A listening socket could not be bound (address in use, permission, ...)."""


def bind_listener(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` has a ``:``), with
    ``SO_REUSEADDR`` and inheritable, to be shared by forked workers; ``BindError``
    (naming the address) when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        reason = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise BindError(exc.errno or errno.EADDRINUSE, reason) from None
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True)
class Listeners:
    """The listening sockets a supervisor bound for its workers."""

    main: socket.socket
    redirect: socket.socket | None = None

    def close(self) -> None:
        """Close these copies of the sockets (a worker's own copies stay open)."""
        self.main.close()
        if self.redirect is not None:
            self.redirect.close()


@dataclass
class _Slot:
    index: int
    pid: int = 0
    ready_fd: int = -1  # read end of the worker's ready pipe (-1: none open)
    ready: bool = False
    started: float = 0.0
    start_failures: int = 0  # in a row, before becoming ready
    crashes: int = 0  # in a row, for the backoff
    due: float | None = None  # when to start it again (None: running or not to restart)


@dataclass
class Supervisor:
    """Forks ``count`` workers running ``main`` and keeps them running (see the module)."""

    count: int
    main: WorkerMain
    grace_seconds: float = 35.0
    clock: Callable[[], float] = time.monotonic
    on_stop: Callable[[], None] | None = None
    """Called when stopping begins: ``Listeners.close``, so that once the workers closed
    theirs, new connections are refused at once instead of waiting in the backlog."""
    slots: list[_Slot] = field(init=False)
    _stopping: int = field(default=0, init=False)  # the signal that asked to stop
    _restarts: deque[float] = field(default_factory=deque, init=False)
    _wake: tuple[int, int] = field(default=(-1, -1), init=False)
    _pid: int = field(default=0, init=False)  # the supervisor's

    def __post_init__(self) -> None:
        self.slots = [_Slot(i) for i in range(self.count)]

    # -- the supervisor ------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until stopped; the exit code."""
        self._pid = os.getpid()
        self._wake = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in CLEAN_SIGNALS}
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, self._on_child)
        try:
            return self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in self._wake:
                os.close(fd)
            for slot in self.slots:
                self._close_ready(slot)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = self._stopping or signum
        self._on_child(signum, _frame)

    def _on_child(self, _signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):  # wake the loop (a full pipe is awake already)
            os.write(self._wake[1], b"s")

    def _supervise(self) -> int:
        first = self.slots[0]
        self._start(first)
        while not first.ready:  # worker 0 alone: first-start initialisation never races
            self._wait(0.5)
            if self._stopping:
                return self._stop()
            for slot, status in self._reap():
                log.error("worker %d failed at start (%s); not starting the others",
                          slot.index, describe(status))  # fmt: skip
                return self._stop(failed=True)
        for slot in self.slots[1:]:
            self._start(slot)
        while True:
            self._wait(self._timeout())
            if self._stopping:
                return self._stop()
            for slot, status in self._reap():
                if not self._schedule_restart(slot, status):
                    return self._stop(failed=True)
            now = self.clock()
            for slot in self.slots:
                if slot.due is not None and slot.due <= now:
                    self._start(slot)

    def _timeout(self) -> float:
        due = [slot.due for slot in self.slots if slot.due is not None]
        return max(0.0, min(due) - self.clock()) if due else 1.0

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal, a ready report, or ``timeout``; note ready workers."""
        watched = {slot.ready_fd: slot for slot in self.slots if slot.ready_fd >= 0}
        try:
            readable, _, _ = select.select([self._wake[0], *watched], [], [], min(timeout, 1.0))
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            return
        for fd in readable:
            if fd == self._wake[0]:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 64)
                continue
            slot = watched[fd]
            if os.read(fd, 1):  # a byte: ready; EOF: it died first (reaped next)
                slot.ready = True
                log.info("worker %d ready (pid %d)", slot.index, slot.pid)
            self._close_ready(slot)

    def _reap(self) -> list[tuple[_Slot, int]]:
        """Workers that exited, with their wait status."""
        ended: list[tuple[_Slot, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return ended
            if pid == 0:
                return ended
            for slot in self.slots:
                if slot.pid == pid:
                    slot.pid = 0
                    self._close_ready(slot)
                    ended.append((slot, status))

    def _schedule_restart(self, slot: _Slot, status: int) -> bool:
        """Plan the restart of a worker that died; False when the supervisor gives up."""
        now = self.clock()
        if not slot.ready or now - slot.started < STARTUP_SECONDS:
            slot.start_failures += 1  # died while starting, or right after
        else:
            slot.start_failures = 0
        if slot.ready and now - slot.started >= STABLE_SECONDS:
            slot.crashes = 0
        slot.crashes += 1
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW_SECONDS:
            self._restarts.popleft()
        if slot.start_failures >= MAX_START_FAILURES:
            log.error("worker %d failed %d times in a row while starting (%s); "
                      "stopping", slot.index, slot.start_failures, describe(status))  # fmt: skip
            return False
        if len(self._restarts) > MAX_RESTARTS:
            log.error("%d worker restarts within %.0f s (last: worker %d, %s); stopping",
                      len(self._restarts), RESTART_WINDOW_SECONDS, slot.index,
                      describe(status))  # fmt: skip
            return False
        delay = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (slot.crashes - 1))
        slot.due = now + delay
        log.warning("worker %d exited (%s); restarting in %.1f s", slot.index,
                    describe(status), delay)  # fmt: skip
        return True

    def _stop(self, *, failed: bool = False) -> int:
        """Forward SIGTERM to every worker, wait ``grace_seconds``, kill the rest; the
        exit code (1 if ``failed`` or a worker did not stop cleanly)."""
        clean = not failed
        if self.on_stop is not None:
            self.on_stop()
        for slot in self.slots:
            slot.due = None
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)
        deadline = self.clock() + self.grace_seconds
        while any(slot.pid for slot in self.slots):
            for slot, status in self._reap():
                if not stopped_cleanly(status):
                    clean = False
                    log.warning("worker %d stopped: %s", slot.index, describe(status))
            if self.clock() >= deadline:
                for slot in self.slots:
                    if slot.pid:
                        log.error("worker %d still running after %.0f s; killed",
                                  slot.index, self.grace_seconds)  # fmt: skip
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(slot.pid, signal.SIGKILL)
                        with contextlib.suppress(ChildProcessError):
                            os.waitpid(slot.pid, 0)
                        slot.pid, clean = 0, False
                break
            time.sleep(0.05)
        log.info("all workers stopped")
        return 0 if clean else 1

    def _close_ready(self, slot: _Slot) -> None:
        if slot.ready_fd >= 0:
            os.close(slot.ready_fd)
            slot.ready_fd = -1

    # -- a worker ------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; covered by the serve tests
            os.close(read_fd)
            self._child(slot.index, write_fd)
        os.close(write_fd)
        slot.pid, slot.ready_fd, slot.ready = pid, read_fd, False
        slot.started, slot.due = self.clock(), None
        log.info("worker %d started (pid %d)", slot.index, pid)

    def _child(self, index: int, ready_fd: int) -> None:  # pragma: no cover - forked
        """The forked worker: default signals (the server installs its own), none of the
        supervisor's descriptors, then ``main``; never returns."""
        code = 1
        try:
            for sig in (*CLEAN_SIGNALS, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            die_with_parent(self._pid)
            for fd in (*self._wake, *(s.ready_fd for s in self.slots if s.ready_fd >= 0)):
                with contextlib.suppress(OSError):
                    os.close(fd)

            def ready() -> None:
                nonlocal ready_fd
                if ready_fd >= 0:
                    os.write(ready_fd, b"1")
                    os.close(ready_fd)
                    ready_fd = -1

            code = self.main(index, ready)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - a forked worker must end here, with a code
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:  # pragma: no cover - runs in forked workers
    """Ask Linux to send this process SIGTERM (a graceful stop) when its parent, the
    supervisor, dies; exit at once if it died already. A no-op where ``prctl`` is
    missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def stopped_cleanly(status: int) -> bool:
    """Exit 0, or ended by the SIGTERM/SIGINT uvicorn re-raises after a graceful stop."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status) == 0
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) in CLEAN_SIGNALS


def describe(status: int) -> str:
    """``exit 1`` or ``signal SIGKILL`` for a wait status."""
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.waitstatus_to_exitcode(status)}"
