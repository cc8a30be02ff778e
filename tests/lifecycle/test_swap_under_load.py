"""Zero-downtime: a closed loop of 16 clients runs through an activation and a rollback.

Every request must succeed; both versions must have answered some of them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import tritonclient.grpc as triton

from tests._daemon import DaemonProcess
from tests.lifecycle.conftest import MODEL, Packages, admin, cli_json, rows

CONCURRENCY = 16


class ClosedLoop:
    """``CONCURRENCY`` threads, each sending its next request when the last one returns."""

    def __init__(self, address: str):
        self.address = address
        self.stop = threading.Event()
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._worker, args=(i,)) for i in range(CONCURRENCY)
        ]

    def _worker(self, seed: int) -> None:
        x = rows(4, seed=seed)
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        with triton.InferenceServerClient(self.address) as client:
            while not self.stop.is_set():
                try:
                    version = client.infer(MODEL, [tensor]).get_response().model_version
                except Exception as exc:  # every failure counts, whatever its kind
                    with self._lock:
                        self.errors.append(str(exc))
                    continue
                with self._lock:
                    self.versions[version] += 1

    def __enter__(self) -> ClosedLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)

    def total(self) -> int:
        with self._lock:
            return sum(self.versions.values())


def test_activation_and_rollback_under_load_lose_no_request(
    daemon: DaemonProcess, packages: Packages
) -> None:
    package = packages.build(2)
    with ClosedLoop(daemon.address) as load:
        time.sleep(1.0)
        with admin(daemon) as client:
            client.push(package, activate=True)
        served_before_rollback = load.total()
        time.sleep(1.0)
        assert cli_json(daemon, "models", "rollback", MODEL)["version"] == "1"
        time.sleep(1.0)
    assert load.errors == []
    assert load.versions["1"] > 0 and load.versions["2"] > 0
    assert load.total() > served_before_rollback > 0
