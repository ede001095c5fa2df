"""The supervisor of ``eventbus run --workers N``: N worker processes of one group, kept at N.

A worker process that fails (exits non-zero, or is killed) is started again, as gunicorn and celery do with theirs;
its partitions go to the others meanwhile and come back when it rejoins. Workers that keep failing (more than
``max_restarts`` times within ``window_s``) are not started again: the supervisor stops the others and reports a
failure, since restarting will not help then. Nor is a worker that exits with the usage code (2: a configuration
error, such as its HTTP port in use): the supervisor stops the others and exits 2 too. SIGINT and SIGTERM are
passed on as SIGTERM (a second one as SIGQUIT, which workers stop at once on); a worker that exits 0 (caught up, with
``--until-idle``, or stopped) is done.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence

from eventbus.cli import EXIT_INTERRUPTED, EXIT_USAGE

logger = logging.getLogger("eventbus.supervisor")

# Set in the environment of the workers a supervisor starts: its pid.
SUPERVISOR_PID_ENV = "EVENTBUS_SUPERVISOR_PID"
# ...and the worker's index (0 to N-1), which stays with the worker across restarts (see ConsumerSettings).
WORKER_INDEX_ENV = "EVENTBUS_WORKER_INDEX"
MAX_RESTARTS = 5
# The most workers ``--workers`` accepts. Each worker is a whole Python process (tens of MB, a log connection, a
# group member), and a group cannot use more workers than its topics have partitions: past a few hundred a larger
# count is a typo, which would otherwise fork until the machine runs out of processes. 256 is well past one
# worker per core on any host eventbus runs on.
MAX_WORKERS = 256
RESTART_WINDOW_S = 60.0
# What a worker exits with when its configuration is wrong: starting it again would fail the same way.
WORKER_MISCONFIGURED = EXIT_USAGE
WORKER_STOPPED_AT_ONCE = EXIT_INTERRUPTED
# What a worker stops at once on, without draining (eventbus.runtime's STOP_AT_ONCE_SIGNAL; not imported from
# there, which is slow to import).
STOP_AT_ONCE_SIGNAL: signal.Signals = getattr(signal, "SIGQUIT", signal.SIGTERM)
_CHECK_INTERVAL_S = 0.2


class Supervisor:
    """Runs one process per command line in ``commands`` (worker ``n`` runs ``commands[n]``)."""

    def __init__(
        self, commands: Sequence[Sequence[str]], *, max_restarts: int = MAX_RESTARTS, window_s: float = RESTART_WINDOW_S
    ) -> None:
        self._commands = [list(command) for command in commands]
        self._max_restarts = max_restarts
        self._window_s = window_s
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._restarts: deque[float] = deque()
        self._stopping = False
        self._stop_signal = signal.SIGTERM
        # The pids of the workers a stop signal has been passed to (a worker started while one arrived may not
        # have been among them: it is sent the signal once it exists).
        self._signalled: set[int] = set()
        self._failed = False
        # Set when a worker exited with WORKER_MISCONFIGURED: the supervisor's own exit code is then the same.
        self.misconfigured = False
        # A second stop signal stops the workers at once (they exit with WORKER_STOPPED_AT_ONCE): so does the
        # supervisor, with the same code, and that is no failure.
        self._signals_forwarded = 0
        self.stopped_at_once = False

    def forward(self, signum: int, _frame: object = None) -> None:
        """Pass a signal on to every worker; no worker is started after it (not the rest of those starting, nor
        workers that fail from then on)."""
        self._stopping = True
        self._signals_forwarded += 1
        # The first stop goes on as SIGTERM whatever it was: a worker still starting (no handlers yet) then ends
        # quietly, where SIGINT would print a KeyboardInterrupt traceback. A second stop goes on as a signal of
        # its own: a worker may have received the first one twice already (systemd stops a service by sending
        # SIGTERM to each of its processes), so it cannot count SIGTERMs.
        self._stop_signal = signal.SIGTERM if self._signals_forwarded == 1 else STOP_AT_ONCE_SIGNAL
        signum = self._stop_signal
        for child in list(self._children.values()):
            if child.poll() is None:
                child.send_signal(signum)
                self._signalled.add(child.pid)

    def run(self) -> bool:
        """Start the workers and wait until every one has finished; True when none failed for good."""
        for index in range(len(self._commands)):
            if self._stopping:
                total = len(self._commands)
                logger.info("stopping: %d of the %d workers were not started", total - index, total)
                break
            try:
                self._start(index)
            except OSError as exc:  # e.g. out of processes or memory: the others are stopped, not left running
                self._failed = True
                logger.error("cannot start worker %d: %s; stopping the others", index, exc)
                self.forward(signal.SIGTERM)
                break
        while self._children:
            time.sleep(_CHECK_INTERVAL_S)
            for index, child in list(self._children.items()):
                code = child.poll()
                if code is not None:
                    del self._children[index]
                    if code != 0:
                        self._on_failure(index, child.pid, code)
        return not self._failed

    def _start(self, index: int) -> None:
        # A process group of its own: a terminal's Ctrl-C then reaches the supervisor alone, which passes it on
        # once. Reaching the worker twice (from the terminal and from here) would stop it without draining.
        env = {**os.environ, SUPERVISOR_PID_ENV: str(os.getpid()), WORKER_INDEX_ENV: str(index)}
        child = self._children[index] = subprocess.Popen(self._commands[index], env=env, process_group=0)
        if self._stopping and child.pid not in self._signalled:
            # A stop signal arrived while this one was being started, before `forward` could see it.
            child.send_signal(self._stop_signal)
            self._signalled.add(child.pid)

    def _on_failure(self, index: int, pid: int, code: int) -> None:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        if self._stopping:
            # Killed by the signal itself: it came before the worker had set its handlers up.
            if code in (WORKER_STOPPED_AT_ONCE, -STOP_AT_ONCE_SIGNAL) and self._signals_forwarded >= 2:
                self.stopped_at_once = True
                logger.warning("worker %d (pid %d) stopped at once", index, pid)
                return
            if code == -signal.SIGTERM:
                # A running worker drains on SIGTERM and exits 0: one killed by it was starting, or had drained.
                logger.info("worker %d (pid %d) stopped before it ran, with nothing to drain", index, pid)
                return
            self._failed = True
            logger.error("worker %d (pid %d) %s while stopping", index, pid, how)
            return
        if code == WORKER_MISCONFIGURED:
            self._failed = self.misconfigured = True
            logger.error(
                "worker %d (pid %d) %s, a configuration error (above): not starting it again; stopping the others",
                index,
                pid,
                how,
            )
            self.forward(signal.SIGTERM)
            return
        now = time.monotonic()
        while self._restarts and self._restarts[0] < now - self._window_s:
            self._restarts.popleft()
        if len(self._restarts) >= self._max_restarts:
            self._failed = True
            logger.error(
                "worker %d (pid %d) %s; workers failed %d times within %g s, so they are not started again: "
                "stopping the others",
                index,
                pid,
                how,
                len(self._restarts) + 1,
                self._window_s,
            )
            self.forward(signal.SIGTERM)
            return
        self._restarts.append(now)
        logger.warning("worker %d (pid %d) %s; starting it again", index, pid, how)
        self._start(index)


def stop_with_supervisor() -> None:
    """In a worker the supervisor started (Linux): be sent SIGTERM, and so drain and stop, if the supervisor dies.
    Out of the terminal's process group, nothing else would stop a worker whose supervisor was killed."""
    supervisor_pid = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor_pid is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != int(supervisor_pid):
        os.kill(os.getpid(), signal.SIGTERM)  # it died before that took effect


def supervised_index() -> int | None:
    """In a worker the supervisor started: its index among the supervisor's workers; else None."""
    index = os.environ.get(WORKER_INDEX_ENV)
    if os.environ.get(SUPERVISOR_PID_ENV) is None or index is None or not index.isdecimal():
        return None
    return int(index)
