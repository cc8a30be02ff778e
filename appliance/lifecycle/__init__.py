"""The model lifecycle: staged pushes, atomic activation, rollback, crash recovery, audit.

``Lifecycle`` (``controller``) is the core the admin service calls; it knows nothing of
gRPC. ``StateStore`` keeps the active version per model crash-safely; ``ServingPolicy``
decides from it what may load and what serves, and verifies every folder as it loads;
every action, accepted or refused, goes to the audit trail (``audit``); ``faults`` holds
the test-only kill and pause points.
"""

from appliance.lifecycle.audit import AuditSink
from appliance.lifecycle.controller import Lifecycle
from appliance.lifecycle.faults import ENV_VAR as FAULT_ENV_VAR
from appliance.lifecycle.faults import FAULT_POINTS, PAUSE_POINTS
from appliance.lifecycle.faults import PAUSE_ENV_VAR as PAUSE_ENV_VAR
from appliance.lifecycle.policy import ServingPolicy
from appliance.lifecycle.recovery import recover
from appliance.lifecycle.results import (
    DaemonFigures,
    DaemonStatus,
    FiguresSource,
    ModelFigures,
    ModelListing,
    ModelStatus,
    PushResult,
    SwitchResult,
    VersionListing,
)
from appliance.lifecycle.state import StateStore
from appliance.lifecycle.status import collect_status

__all__ = [
    "FAULT_ENV_VAR",
    "FAULT_POINTS",
    "PAUSE_ENV_VAR",
    "PAUSE_POINTS",
    "AuditSink",
    "DaemonFigures",
    "DaemonStatus",
    "FiguresSource",
    "Lifecycle",
    "ModelFigures",
    "ModelListing",
    "ModelStatus",
    "PushResult",
    "ServingPolicy",
    "StateStore",
    "SwitchResult",
    "VersionListing",
    "collect_status",
    "recover",
]
