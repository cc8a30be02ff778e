"""Test-only fault points: kill, or hold, the daemon at a named step of a change.

Set ``APPLIANCE_FAULT_POINT`` to one of ``FAULT_POINTS`` and the daemon exits at once
with status 137 (as after ``kill -9``: no cleanup, no flush) when it reaches that step.
The crash-safety tests use it to stop the daemon between every two steps.

Set ``APPLIANCE_PAUSE_POINT`` to ``NAME:FOLDER`` (a name of ``PAUSE_POINTS``) and the
worker thread that reaches that step creates ``FOLDER/NAME.reached`` and waits (up to a
minute) until ``FOLDER/NAME.release`` exists: the cancellation tests use it to cancel
an RPC while its change is half done. Unset, each point costs one dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

ENV_VAR = "APPLIANCE_FAULT_POINT"
PAUSE_ENV_VAR = "APPLIANCE_PAUSE_POINT"

#: In the order a ``push --activate`` passes them; ``activate`` and ``rollback`` pass
#: the last four.
FAULT_POINTS = (
    "after_upload",  # package file received in staging
    "after_unpack",  # extracted in staging
    "after_verify",  # signature and manifest checked
    "after_selftest",  # new session loaded, golden cases passed
    "after_install",  # version folder renamed into the repository
    "after_record",  # state record says the new version is active
    "after_switch",  # unversioned requests go to the new version
    "after_retire",  # old version drained and unloaded, before pruning
)

#: Where a worker thread may be held; "before_record": the state record of an
#: activation is about to be written (the switch has not happened yet).
PAUSE_POINTS = ("before_record",)

_EXIT_STATUS = 137  # what a shell reports after SIGKILL
_PAUSE_LIMIT_S = 60.0


def fault_point(name: str) -> None:
    """Die here if the environment names this point."""
    if os.environ.get(ENV_VAR) == name:
        log.critical("fault point %s reached: exiting with %d", name, _EXIT_STATUS)
        os._exit(_EXIT_STATUS)


def pause_point(name: str) -> None:
    """Hold this (worker) thread here if the environment names this point."""
    point, _, folder = os.environ.get(PAUSE_ENV_VAR, "").partition(":")
    if point != name or not folder:
        return
    Path(folder, f"{name}.reached").touch()
    log.warning("pause point %s reached: waiting for %s.release", name, name)
    deadline = time.monotonic() + _PAUSE_LIMIT_S
    while not Path(folder, f"{name}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)


__all__ = ["ENV_VAR", "FAULT_POINTS", "PAUSE_ENV_VAR", "PAUSE_POINTS", "fault_point", "pause_point"]
