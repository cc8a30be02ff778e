"""The systemd notify protocol, spoken in plain Python over ``$NOTIFY_SOCKET``.

Owns telling the service manager how the daemon is doing: ``READY=1`` once the models are
loaded and the port is open, ``STATUS=`` a one-line summary, ``WATCHDOG=1`` from the
serving event loop at half of ``$WATCHDOG_USEC`` (a hung loop stops pinging and systemd
restarts the service), and ``STOPPING=1`` when the drain begins. Without
``$NOTIFY_SOCKET`` (a terminal, a container) every call is a no-op.

Protocol: datagrams of newline-separated ``KEY=VALUE`` lines to an ``AF_UNIX`` socket
whose address is a path, or an abstract name written with a leading ``@``
(https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html). It does not
own the daemon's lifecycle (``appliance.server``); it only reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # vsock and other transports: not for a local daemon


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings: half of ``$WATCHDOG_USEC``, if the watchdog is ours."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were started by a wrapper)
    return int(usec) / 1e6 / 2


class Notifier:
    """Sends notify messages; ``enabled`` is False when not run by systemd."""

    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env) if self._address else None
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> None:
        """One datagram of ``KEY=VALUE`` lines; a failure is logged, never raised."""
        if self._address is None:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self._address)
                s.sendall(message.encode())
        except OSError as exc:
            # Losing the service manager must not take the serving down with it.
            log.warning("systemd notify failed (%s): %s", fields, exc)

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=_one_line(status), MAINPID=str(os.getpid()))

    def status(self, status: str) -> None:
        self.send(STATUS=_one_line(status))

    def stopping(self, status: str = "draining") -> None:
        self.send(STOPPING="1", STATUS=_one_line(status))

    def start_watchdog(self) -> None:
        """Ping from the running event loop, so a loop that hangs stops the pings."""
        if self.watchdog_interval is None or self._watchdog is not None:
            return
        self._watchdog = asyncio.get_running_loop().create_task(
            self._ping_forever(self.watchdog_interval), name="systemd-watchdog"
        )

    async def stop_watchdog(self) -> None:
        if self._watchdog is None:
            return
        self._watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watchdog
        self._watchdog = None

    async def _ping_forever(self, interval: float) -> None:
        while True:
            self.send(WATCHDOG="1")
            await asyncio.sleep(interval)


def _one_line(text: str) -> str:
    return " ".join(text.split())


__all__ = ["Notifier"]
