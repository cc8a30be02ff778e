"""The retraining trigger: run ``retrain_command`` when a model's quality is seen to fall.

Owns when the command runs and how. Two signals ask for it: a version's live accuracy
(``appliance.quality.feedback``) below ``[models.NAME] min_live_accuracy`` once it has
``min_feedback_reports`` reports, and a drift alert (``appliance.monitoring.drift``)
held on the serving version for ``retrain_after_s`` (``DriftWatch`` looks once a
second). Either way the command runs at most once per ``retrain_cooldown_s``, counted
from the start of the last run, whatever the signal.

The command (a list: program and arguments, never a shell line) runs as a child process
with no stdin, its output line by line to the daemon's log, killed after
``retrain_timeout_s``. It runs as a task beside serving: nothing waits on it. Its start
and its end are audited (``quality.retrain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from collections import Counter
from collections.abc import Callable

from appliance.audit import AuditSink
from appliance.config import Config
from appliance.monitoring.drift import DriftState

log = logging.getLogger(__name__)

#: Seconds between looks at the drift state.
DRIFT_POLL_S = 1.0


class RetrainTrigger:
    """Starts ``retrain_command`` runs, one per model per cooldown."""

    def __init__(self, config: Config, audit: AuditSink):
        self._config = config
        self._audit = audit
        self._last_start: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Runs started per model (``appliance_retrain_runs_total``).
        self.runs: Counter[str] = Counter()

    def live_accuracy(self, model: str, version: int, accuracy: float, reports: int) -> None:
        """After each outcome report (``Outcomes``' callback)."""
        settings = self._config.overrides_for(model)
        floor = settings.min_live_accuracy
        if floor is None or reports < settings.min_feedback_reports or accuracy >= floor:
            return
        self.consider(
            model,
            f"live accuracy of version {version} is {accuracy:.3f} over {reports} reports, "
            f"below min_live_accuracy = {floor}",
        )

    def consider(self, model: str, reason: str) -> bool:
        """Start a run for ``model`` unless it has none configured or is in its cooldown."""
        settings = self._config.overrides_for(model)
        if not settings.retrain_command:
            return False
        now = time.monotonic()
        last = self._last_start.get(model)
        if last is not None and now - last < settings.retrain_cooldown_s:
            return False
        self._last_start[model] = now
        self.runs[model] += 1
        command = list(settings.retrain_command)
        self._audit.record(
            "quality.retrain", model=model, reason=reason, command=command, outcome="started"
        )
        log.warning("model %s: running the retrain command: %s", model, reason)
        task = asyncio.get_running_loop().create_task(
            self._run(model, command, settings.retrain_timeout_s)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, model: str, command: list[str], timeout: float) -> None:
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            self._finished(model, "failed", started, reason=f"could not start: {exc.strerror}")
            return
        try:
            await asyncio.wait_for(self._relay(model, process), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            self._finished(model, "failed", started, reason=f"killed after {timeout:.0f} s")
            return
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise
        code = process.returncode
        self._finished(model, "ok" if code == 0 else "failed", started, exit_code=code)

    async def _relay(self, model: str, process: asyncio.subprocess.Process) -> None:
        """The command's output, line by line, to the log."""
        if process.stdout is not None:  # piped, always
            async for line in process.stdout:
                log.info("retrain %s: %s", model, line.decode(errors="replace").rstrip())
        await process.wait()

    def _finished(self, model: str, outcome: str, started: float, **fields: object) -> None:
        seconds = round(time.monotonic() - started, 3)
        self._audit.record(
            "quality.retrain", model=model, outcome=outcome, seconds=seconds, **fields
        )
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(level, "model %s: retrain command ended %s (%s)", model, outcome, fields or "")

    async def close(self) -> None:
        """Stop runs still going (the daemon is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class DriftWatch:
    """Asks for a retrain when a model's serving version holds a drift alert long enough."""

    def __init__(
        self,
        config: Config,
        trigger: RetrainTrigger,
        drift_states: Callable[[], dict[str, DriftState]],
    ):
        self._config = config
        self._trigger = trigger
        self._states = drift_states
        self._alert_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        watched = [n for n, m in self._config.models.items() if m.retrain_after_s is not None]
        if watched:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(DRIFT_POLL_S)
            self.look(time.monotonic())

    def look(self, now: float) -> None:
        """One look at every model's drift state."""
        states = self._states()
        for name, settings in self._config.models.items():
            hold = settings.retrain_after_s
            if hold is None:
                continue
            if states.get(name) is not DriftState.ALERT:
                self._alert_since.pop(name, None)
                continue
            since = self._alert_since.setdefault(name, now)
            if now - since >= hold:
                self._trigger.consider(
                    name, f"drift alert held for {now - since:.0f} s (retrain_after_s = {hold})"
                )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


__all__ = ["DRIFT_POLL_S", "DriftWatch", "RetrainTrigger"]
