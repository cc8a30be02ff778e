"""Shared by the routing tests: tiny classifiers as Triton-style folders, ``/metrics``
and the admin client of a daemon."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import tritonclient.grpc as triton

from appliance._proto import admin_pb2 as pb
from appliance.admin import AdminClient, AdminTarget
from tests._daemon import DaemonProcess
from tests.monitoring.conftest import Samples, scrape, value

__all__ = ["Samples", "admin", "classify", "scrape", "value", "wait_for_shadow"]


def admin(daemon: DaemonProcess) -> AdminClient:
    return AdminClient(AdminTarget(str(daemon.workdir / "admin.sock")), timeout=30)


def classify(client: triton.InferenceServerClient, model: str, x: np.ndarray) -> triton.InferResult:
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x.astype(np.float32))
    return client.infer(model, [tensor])


def wait_for_shadow(
    daemon: DaemonProcess, name: str, done: Callable[[pb.ShadowState], bool]
) -> pb.ShadowState:
    """Poll the daemon's shadows until ``name``'s satisfies ``done`` (copies run after
    the answers, so a test waits for them)."""
    deadline = time.monotonic() + 20
    with admin(daemon) as client:
        while True:
            states = {s.name: s for s in client.shadows().shadows}
            state = states.get(name)
            if state is not None and done(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"shadow of {name} never got there: {state}")
            time.sleep(0.05)
