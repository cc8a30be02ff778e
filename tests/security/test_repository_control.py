"""Repository control: off unless configured, so a local user cannot take models offline.

With the default config (auth off, loopback), an unprivileged local user calls
RepositoryModelUnload and RepositoryModelLoad on the inference port. Both are refused
with FAILED_PRECONDITION naming ``[server] repository_control``, audited, and the model
keeps serving. (With the key on and auth on, they need the admin role:
``tests/box/test_auth.py``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import tritonclient.grpc as triton

from tests._daemon import DaemonProcess
from tests.security.conftest import NOBODY, as_nobody


def test_a_local_user_cannot_unload_models_on_a_default_box(visible_workdir: Path) -> None:
    audit = visible_workdir / "audit.jsonl"
    with DaemonProcess(visible_workdir, {"lifecycle": {"audit_log": str(audit)}}) as daemon:
        report = as_nobody("repository", {"address": daemon.address, "model": "breast_cancer"})
        with triton.InferenceServerClient(daemon.address) as client:
            assert client.is_model_ready("breast_cancer")
    for name in ("unload", "load"):
        answer = report["outcomes"][name]
        assert answer["code"] == "FAILED_PRECONDITION", report
        assert "repository_control = true" in answer["details"]
    refused = [json.loads(line) for line in audit.read_text().splitlines()]
    refused = [r for r in refused if r["event"] == "auth.refused"]
    assert [(r["action"], r["status"]) for r in refused] == [
        ("RepositoryModelUnload", "FAILED_PRECONDITION"),
        ("RepositoryModelLoad", "FAILED_PRECONDITION"),
    ]
    assert all(r["caller"] == "anonymous" for r in refused)
    assert NOBODY  # the attacker's uid is checked by as_nobody
