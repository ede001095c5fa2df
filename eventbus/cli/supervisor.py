"""The supervisor of ``eventbus run --workers N``: N worker processes of one group, kept at N.

A worker process that fails (exits non-zero, or is killed) is started again, as gunicorn and celery do with theirs;
its partitions go to the others meanwhile and come back when it rejoins. Workers that keep failing (more than
``max_restarts`` times within ``window_s``) are not started again: the supervisor stops the others and reports a
failure, since restarting will not help then. SIGINT and SIGTERM are passed on; a worker that exits 0 (caught up,
with ``--until-idle``, or stopped) is done.
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

logger = logging.getLogger("eventbus.supervisor")

# Set in the environment of the workers a supervisor starts: its pid.
SUPERVISOR_PID_ENV = "EVENTBUS_SUPERVISOR_PID"
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
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
        self._failed = False

    def forward(self, signum: int, _frame: object = None) -> None:
        """Pass a signal on to every worker; workers that fail from then on are not started again."""
        self._stopping = True
        for child in self._children.values():
            if child.poll() is None:
                child.send_signal(signum)

    def run(self) -> bool:
        """Start the workers and wait until every one has finished; True when none failed for good."""
        for index in range(len(self._commands)):
            self._start(index)
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
        env = {**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())}
        self._children[index] = subprocess.Popen(self._commands[index], env=env, process_group=0)

    def _on_failure(self, index: int, pid: int, code: int) -> None:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        if self._stopping:
            self._failed = True
            logger.error("worker %d (pid %d) %s while stopping", index, pid, how)
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
