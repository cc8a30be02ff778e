"""Fixtures for the federated app's tests: real Flower messages and real site files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flwr.app import Message, Metadata, RecordDict
from sklearn.datasets import load_breast_cancer

FEATURES = [f"f{i}" for i in range(30)]


def incoming(content: RecordDict, message_type: str, node_id: int = 7) -> Message:
    """A message as the SuperNode hands it to the ClientApp (ids set by the SuperLink)."""
    metadata = Metadata(
        run_id=1,
        message_id=f"msg-{time.monotonic_ns()}",
        src_node_id=1,
        dst_node_id=node_id,
        reply_to_message_id="",
        group_id="1",
        created_at=time.time(),
        ttl=600.0,
        message_type=message_type,
    )
    return Message(content=content, metadata=metadata)


@pytest.fixture(scope="session")
def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[np.ndarray, np.ndarray], Path]:
    def write(x: np.ndarray, y: np.ndarray, name: str = "site.csv") -> Path:
        frame = pd.DataFrame(x, columns=FEATURES[: x.shape[1]])
        frame["label"] = y
        path = tmp_path / name
        frame.to_csv(path, index=False)
        return path

    return write


@pytest.fixture
def site_csv(breast_cancer: tuple[np.ndarray, np.ndarray], write_csv: Callable[..., Path]) -> Path:
    x, y = breast_cancer
    return write_csv(x[:150], y[:150])
