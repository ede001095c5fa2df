"""Running a whole app: its processors (one `Worker`) and each of its projections (one `ProjectionRunner` each),
side by side on one event loop, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from eventbus.app import App
from eventbus.backends.base import Log
from eventbus.errors import ConfigurationError
from eventbus.runtime.worker import Worker, WorkerSettings, WorkerStats, ensure_declared_topics

if TYPE_CHECKING:
    from eventbus.projections.runner import ProjectionRunner

logger = logging.getLogger("eventbus.worker")


class _Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class AppStats:
    processors: WorkerStats | None = None
    folded: dict[str, int] = field(default_factory=dict)


class AppRunner:
    def __init__(
        self,
        app: App,
        log: Log,
        settings: WorkerSettings | None = None,
        *,
        http_port: int | None = None,
        default_projection_store: str | None = None,
    ) -> None:
        """``default_projection_store``: where projections that name no store (and with ``EVENTBUS_STORE`` unset)
        fold, instead of ``sqlite:///eventbus.projections.db`` in the working directory."""
        if not app.processors and not app.projections:
            raise ConfigurationError(f"app {app.name!r} declares no processors and no projections; nothing to run")
        from eventbus.app.projection import DEFAULT_STORE_URL, resolve_store_url
        from eventbus.projections.runner import ProjectionRunner

        self.app = app
        self.log = log
        self.http_port = http_port
        self.settings = settings or WorkerSettings()
        self.worker = Worker(app, log, self.settings) if app.processors else None
        from eventbus.codecs.avro import LazyAvroDecoder

        # Projections read Avro topics with the app's schemas, like its processors; fastavro loads only if needed.
        avro = LazyAvroDecoder(app.schema_settings, log, lambda: app.schema_set)
        fallback = default_projection_store or DEFAULT_STORE_URL
        self.projections: dict[str, ProjectionRunner] = {
            name: ProjectionRunner(projection, log, self.settings, avro, resolve_store_url(projection.store, fallback))
            for name, projection in app.projections.items()
        }
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        parts: list[_Stoppable] = [*self.projections.values()]
        if self.worker is not None:
            parts.append(self.worker)
        for part in parts:
            part.stop()

    async def run(self) -> AppStats:
        self.app.bind(self.log)
        http = None
        unwatch_lag: Callable[[], None] | None = None
        try:
            if self.http_port is not None:
                from eventbus.http import serve

                # Before the first request: an event posted to a declared topic that did not exist yet would
                # otherwise create it with the log's default partition count, and the worker would then refuse
                # to start on it.
                await asyncio.get_running_loop().run_in_executor(None, ensure_declared_topics, self.app, self.log)
                http = await serve(self.app, self.log, self.http_port)
                if self.worker is not None:
                    from eventbus.observability.metrics import watch_consumer_lag

                    topics = sorted({topic for processor in self.app.processors for topic in processor.topics})
                    unwatch_lag = watch_consumer_lag(self.log, self.worker.group, topics)
            return await self._run()
        finally:
            if unwatch_lag is not None:
                unwatch_lag()
            if http is not None:
                await http.cleanup()
            self.app.bind(None)

    async def _run(self) -> AppStats:
        if self.projections:
            # Before any projection starts: each creates the topics it folds with the log's default partition
            # count, and a declared topic created that way first would keep the worker from ever starting.
            await asyncio.get_running_loop().run_in_executor(None, ensure_declared_topics, self.app, self.log)
        tasks: dict[str, asyncio.Task[object]] = {}
        if self.worker is not None:
            processors = asyncio.ensure_future(self.worker.run())
            tasks["processors"] = processors
            # Until-idle: a projection is idle only once the processors that may feed its topics are.
            upstream = asyncio.Event()
            processors.add_done_callback(lambda _: upstream.set())
            for runner in self.projections.values():
                runner.upstream_done = upstream
        for name, runner in self.projections.items():
            tasks[f"projection {name}"] = asyncio.ensure_future(runner.run())
        try:
            while True:
                done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
                failed = [t for t in done if not t.cancelled() and t.exception() is not None]
                if failed or len(done) == len(tasks):
                    break
        finally:
            # One part failing (or all finishing) stops the rest, which drain and commit as on a signal.
            self.stop()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        for task in tasks.values():
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        stats = AppStats(self.worker.stats if self.worker is not None else None)
        stats.folded = {name: runner.folded for name, runner in self.projections.items()}
        return stats
