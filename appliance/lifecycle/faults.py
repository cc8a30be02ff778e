"""Test-only fault points: kill the daemon at a named step of a push or an activation.

Set ``APPLIANCE_FAULT_POINT`` to one of ``FAULT_POINTS`` and the daemon exits at once
with status 137 (as after ``kill -9``: no cleanup, no flush) when it reaches that step.
The crash-safety tests use it to stop the daemon between every two steps; unset, each
point costs one dictionary lookup.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ENV_VAR = "APPLIANCE_FAULT_POINT"

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

_EXIT_STATUS = 137  # what a shell reports after SIGKILL


def fault_point(name: str) -> None:
    """Die here if the environment names this point."""
    if os.environ.get(ENV_VAR) == name:
        log.critical("fault point %s reached: exiting with %d", name, _EXIT_STATUS)
        os._exit(_EXIT_STATUS)


__all__ = ["ENV_VAR", "FAULT_POINTS", "fault_point"]
