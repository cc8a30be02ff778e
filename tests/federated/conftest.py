"""Fixtures for the federated app's tests: the bundled breast-cancer data as site files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

FEATURES = [f"f{i}" for i in range(30)]


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
