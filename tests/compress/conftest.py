"""Tiny models trained on scikit-learn's bundled data sets, shared across compress tests.

Breast cancer (tabular, 2 classes) trains a ``TabularMLP``; digits (8x8 images, 10
classes) a ``SmallCNN``. Both train in a second or two on CPU, session-wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from appliance.package import generate_keypair
from compress.models import SmallCNN, TabularMLP


@dataclass(frozen=True)
class Task:
    folder: Path
    model: torch.nn.Module
    x_test: np.ndarray
    y_test: np.ndarray


def _train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for idx in torch.split(torch.randperm(len(inputs)), 128):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs[idx]), labels[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    model.eval()


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # Tiny models: thread hand-offs cost more than they save, worse on a busy 2-core box.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> Task:
    """Breast cancer: train.csv, eval.parquet (with a ``site`` group), teacher.pt."""
    folder = tmp_path_factory.mktemp("tabular")
    data = load_breast_cancer()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    columns = [f"f{i}" for i in range(x.shape[1])]
    train = pd.DataFrame(x_tr, columns=columns).assign(label=y_tr)
    train.to_csv(folder / "train.csv", index=False)
    sites = np.where(np.arange(len(y_te)) % 2 == 0, "north", "south")
    pd.DataFrame(x_te, columns=columns).assign(label=y_te, site=sites).to_parquet(
        folder / "eval.parquet"
    )
    model = TabularMLP(30, 2)
    model.set_standardization(torch.from_numpy(x_tr.mean(0)), torch.from_numpy(x_tr.std(0)))
    _train(model, x_tr, y_tr, epochs=60, lr=3e-3)
    torch.save(model.state_dict(), folder / "teacher.pt")
    return Task(folder, model, x_te, y_te)


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Task:
    """Digits: train.npz / eval.npz with x (N, 1, 8, 8) in [0, 1] and y; teacher.pt."""
    folder = tmp_path_factory.mktemp("digits")
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    np.savez(folder / "train.npz", x=x_tr, y=y_tr)
    np.savez(folder / "eval.npz", x=x_te, y=y_te)
    model = SmallCNN(1, 10, width=8)
    _train(model, x_tr, y_tr, epochs=15, lr=1e-2)
    torch.save(model.state_dict(), folder / "teacher.pt")
    return Task(folder, model, x_te, y_te)


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
