"""A hostile local user's attempts on a running daemon, run as another uid by the tests.

``python _intruder.py ATTACK JSON`` prints one JSON object of what it got. It only
connects to addresses on this machine (loopback TCP, Unix sockets under the paths it
is given), with short timeouts, and stops by itself.

- ``admin``: try the admin service's List on each of the daemon's TCP ports (the test
  names them: a real attacker would scan every port, which here would reach other
  people's daemons) and on every Unix socket under the given folders (as listed in
  ``/proc/net/unix``, readable by anyone): from an ephemeral port, and from 127.0.0.2
  bound to the source port of each open loopback connection to that port (how a relay
  that trusted source ports was fooled). Reports every answer it got.
- ``repository``: RepositoryModelUnload and Load on the inference port.
- ``streams``: open many idle ModelStreamInfer streams and report how each ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from appliance._proto import admin_pb2, admin_pb2_grpc
from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc

TIMEOUT = 3.0


def _tcp_table() -> list[tuple[int, int, int]]:
    """(local port, remote port, state) of every TCP socket on the box, IPv4 and IPv6."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], int(fields[3], 16)
            rows.append(
                (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state)
            )
    return rows


def _unix_sockets(roots: list[str]) -> list[str]:
    paths = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and any(fields[7].startswith(root) for root in roots):
            paths.append(fields[7])
    return sorted(set(paths))


def _admin_list(target: str) -> str:
    """One List call; the answer's model names, or the error it ended in."""
    with grpc.insecure_channel(target) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        try:
            reply = stub.List(admin_pb2.ListRequest(), timeout=TIMEOUT)
        except grpc.RpcError as exc:
            return f"refused: {exc.code().name}"
        return "ANSWERED: " + ",".join(m.name for m in reply.models)


@contextlib.contextmanager
def _relayed(sock: socket.socket) -> Iterator[str]:
    """A Unix socket of our own whose one connection is spliced onto ``sock``."""
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "relay")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def splice() -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        for a, b in ((client, sock), (sock, client)):
            threading.Thread(target=_copy, args=(a, b), daemon=True).start()

    threading.Thread(target=splice, daemon=True).start()
    try:
        yield f"unix:{path}"
    finally:
        listener.close()


def _copy(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass


def _from_source(port: int, source_port: int) -> str:
    """List on ``127.0.0.1:port`` from ``127.0.0.2:source_port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.2", source_port))
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        return f"no connection: {exc.strerror}"
    try:
        with _relayed(sock) as target:
            return _admin_list(target)
    finally:
        sock.close()


def attack_admin(job: dict[str, Any]) -> dict[str, Any]:
    tried: dict[str, str] = {}
    table = _tcp_table()
    for port in job["ports"]:
        tried[f"tcp 127.0.0.1:{port}"] = _admin_list(f"127.0.0.1:{port}")
        sources = sorted({local for local, remote, state in table if remote == port and state})
        for source in sources:
            tried[f"tcp 127.0.0.1:{port} from 127.0.0.2:{source}"] = _from_source(port, source)
    for path in _unix_sockets(job["roots"]):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError as exc:
            tried[f"unix {path}"] = f"no connection: {exc.strerror}"
            continue
        finally:
            probe.close()
        tried[f"unix {path}"] = _admin_list(f"unix:{path}")
    answers = {k: v for k, v in tried.items() if v.startswith("ANSWERED")}
    return {"uid": os.getuid(), "tried": tried, "answers": answers}


def attack_repository(job: dict[str, Any]) -> dict[str, Any]:
    outcomes = {}
    with grpc.insecure_channel(job["address"]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        for name, call, request in (
            ("unload", stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest),
            ("load", stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest),
        ):
            try:
                call(request(model_name=job["model"]), timeout=TIMEOUT)
                outcomes[name] = {"code": "OK", "details": ""}
            except grpc.RpcError as exc:
                outcomes[name] = {"code": exc.code().name, "details": exc.details()}
    return {"uid": os.getuid(), "outcomes": outcomes}


def attack_streams(job: dict[str, Any]) -> dict[str, Any]:
    """Open ``count`` streams on one channel, send nothing, and see how each ends."""
    ended: list[str] = []
    lock = threading.Lock()
    with grpc.insecure_channel(job["address"]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        calls = []
        for _ in range(job["count"]):
            call = stub.ModelStreamInfer(_idle(job["hold_s"]), timeout=job["hold_s"] + 30)
            calls.append(call)

        def drain(call: Any) -> None:
            try:
                for _ in call:
                    pass
                outcome = "OK"
            except grpc.RpcError as exc:
                outcome = f"{exc.code().name}: {exc.details()}"
            with lock:
                ended.append(outcome)

        threads = [threading.Thread(target=drain, args=(c,)) for c in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(job["hold_s"] + 60)
    return {"uid": os.getuid(), "ended": ended}


def _idle(seconds: float) -> Iterator[pb.ModelInferRequest]:
    time.sleep(seconds)  # a stream that carries nothing
    return
    yield


ATTACKS = {"admin": attack_admin, "repository": attack_repository, "streams": attack_streams}

if __name__ == "__main__":
    attack, job = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(ATTACKS[attack](job)))
