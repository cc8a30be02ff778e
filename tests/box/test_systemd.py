"""The notify protocol: what systemd hears from a real daemon, and the Notifier alone."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

import pytest

from appliance.systemd import Notifier
from tests.box.conftest import BoxDaemon


def test_a_daemon_says_ready_pings_the_watchdog_and_says_stopping(tmp_path: Path) -> None:
    daemon = BoxDaemon(tmp_path, {}, watchdog_usec=400_000)  # ping every 0.2 s
    with daemon:
        ready = next(m for m in daemon.messages if "READY" in m)
        assert ready["READY"] == "1"
        assert "affine:1" in ready["STATUS"] and "CPUExecutionProvider" in ready["STATUS"]
        assert ready["MAINPID"] == str(daemon.process.pid if daemon.process else None)
        pings = 0
        while pings < 3:
            message = daemon.receive(2.0)
            assert message is not None, "the watchdog went quiet"
            pings += message.get("WATCHDOG") == "1"
        assert daemon.process is not None
        daemon.process.terminate()
        stopping = daemon.wait_for("STOPPING", 10)
        assert stopping["STOPPING"] == "1"
        assert daemon.process.wait(30) == 0


def test_abstract_socket_addresses_are_supported() -> None:
    name = f"appliance-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(2)
        Notifier({"NOTIFY_SOCKET": f"@{name}"}).status("loading 3 models\nnow")
        assert listener.recv(4096) == b"STATUS=loading 3 models now"


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("serving")
    notifier.stopping()


def test_the_watchdog_of_another_process_is_not_ours(tmp_path: Path) -> None:
    path = str(tmp_path / "n.sock")
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier(env).watchdog_interval is None
    env["WATCHDOG_PID"] = str(os.getpid())
    assert Notifier(env).watchdog_interval == 0.5


def test_a_vanished_notify_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = tmp_path / "gone.sock"
    notifier = Notifier({"NOTIFY_SOCKET": str(gone)})
    with caplog.at_level(logging.WARNING, logger="appliance.systemd"):
        notifier.send(WATCHDOG="1")  # must return, not raise
    (record,) = [r for r in caplog.records if r.name == "appliance.systemd"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("systemd notify failed")
    assert "WATCHDOG" in message and "No such file or directory" in message
