"""How a flow run ends for its user: a user error (config, credentials, endpoint) is one log
line and a Failed state, not Prefect's tracebacks; the engine's own log lines reach the run's
logs."""

from __future__ import annotations

import logging
import re

from prefect import get_run_logger
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler
from prefect.states import Failed, State

from synthaix.errors import SynthaixError
from synthaix.llm.stats import spend, spent_before


class _QuietUserErrors(logging.Filter):
    """Prefect logs a failed task at ERROR twice (the traceback, then its final state). For a
    SynthaixError that is noise around the one line the flow logs itself: the traceback is
    dropped (kept at DEBUG when debug logging is on), the final state said at INFO."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_tasks: set[object] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        task_run = getattr(record, "task_run_id", None)
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, SynthaixError):
            self.failed_tasks.add(task_run)
            return self._demoted(record, logging.DEBUG)
        message = record.getMessage()
        if not message.startswith("Finished in state"):
            return True
        # A task whose retry condition turns its error down logs no traceback first: its
        # final state names the error's class.
        named = _FAILED_WITH.match(message)
        if task_run in self.failed_tasks or (named and named[1] in _user_errors()):
            self.failed_tasks.discard(task_run)
            return self._demoted(record, logging.INFO)
        return True

    @staticmethod
    def _demoted(record: logging.LogRecord, level: int) -> bool:
        if level == logging.DEBUG and not logging.getLogger("prefect").isEnabledFor(level):
            return False
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return True


_QUIET = _QuietUserErrors()
_FAILED_WITH = re.compile(r"Finished in state Failed\(.Task run encountered an exception (\w+):")


def _user_errors() -> set[str]:
    """The names of SynthaixError and its subclasses."""
    found, todo = set(), [SynthaixError]
    while todo:
        kind = todo.pop()
        found.add(kind.__name__)
        todo += kind.__subclasses__()
    return found


class _Scrub(logging.Filter):
    """Prefect logs a run's exception (`Encountered exception during execution: %r` and its
    traceback) to the console and the API: without the secrets the process holds."""

    def filter(self, record: logging.LogRecord) -> bool:
        from synthaix.llm.credentials import scrubbed

        record.msg, record.args = scrubbed(record.getMessage()), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = scrubbed(text), None
        return True


_SCRUB = _Scrub()


def quiet_user_errors() -> None:
    """Install the filter, and forward the `synthaix` logger to the run's logs (once; what
    PREFECT_LOGGING_EXTRA_LOGGERS=synthaix would do, on a worker that did not set it)."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        for added in (_QUIET, _SCRUB):  # in this order: the first reads the exception
            if added not in logger.filters:
                logger.addFilter(added)
    engine = logging.getLogger("synthaix")
    if not any(isinstance(h, _RunLogs) for h in engine.handlers):
        engine.addHandler(_RunLogs())
    if engine.level == logging.NOTSET:
        engine.setLevel(logging.INFO)


class _RunLogs(APILogHandler):
    """The engine's log lines (resumed chunks, ...) in the logs of the run they belong to; a
    line logged outside any run (the engine used without Prefect) is not Prefect's."""

    def emit(self, record: logging.LogRecord) -> None:
        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            super().emit(record)


def one_line(error: SynthaixError) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    hint = getattr(error, "hint", None)
    return f"{text} (hint: {hint})" if hint else text


def failed(error: SynthaixError) -> State:
    """The run's end on a user error: one ERROR line, and a Failed state whose result
    re-raises the error (so a caller of the flow, like the CLI, gets it as it was)."""
    message = one_line(error)
    if (spent := spent_before(error)).requests:  # a provider bills them: the UI shows it
        message += f"; spent before failing: {spend(spent)}"
    get_run_logger().error(message)
    return Failed(message=message, data=error)
