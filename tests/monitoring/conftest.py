"""Shared by the monitoring tests: scraping ``/metrics`` and the breast-cancer data."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer

from tests._daemon import DaemonProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(daemon: DaemonProcess) -> Samples:
    """Every sample of ``/metrics``, keyed by (name, sorted labels)."""
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def matching(
    samples: Samples, name: str, **labels: str
) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {k: v for (n, k), v in samples.items() if n == name and wanted <= set(k)}


@pytest.fixture(scope="session")
def tumours() -> np.ndarray:
    """(569, 30) FP32: the Wisconsin diagnostic features the default model was built on."""
    data: np.ndarray = load_breast_cancer().data
    return data.astype(np.float32)
