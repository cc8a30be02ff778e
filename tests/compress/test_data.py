"""Data loading: tables, arrays, text lines, image folders, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from compress.data import Dataset, check_compatible, load_dataset
from compress.errors import DataError
from compress.recipe import DataSpec


def test_csv_features_label_group(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4], "label": [0, 1], "site": ["x", "y"]}).to_csv(
        path, index=False
    )
    data = load_dataset(DataSpec(path=path, group="site"))
    assert isinstance(data.x, np.ndarray) and data.x.shape == (2, 2)
    assert data.y is not None and data.y.tolist() == [0, 1]
    assert data.groups is not None and data.groups.tolist() == ["x", "y"]


def test_missing_columns_named(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": [1.0], "label": [0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="expected a group column 'site'"):
        load_dataset(DataSpec(path=path, group="site"))
    with pytest.raises(DataError, match=r"expected feature columns \['zz'\]"):
        load_dataset(DataSpec(path=path, features=["zz"]))


def test_non_numeric_feature_named(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": ["high"], "label": [0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"non-numeric columns \['a'\]"):
        load_dataset(DataSpec(path=path))


def test_npz_mismatched_lengths(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match="expected 3 labels"):
        load_dataset(DataSpec(path=path, label="y"))


def test_text_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("first note\n\nsecond note\n")
    assert load_dataset(DataSpec(path=path, label=None)).x == ["first note", "second note"]


def test_image_folder(tmp_path: Path) -> None:
    for label, value in (("cat", 0), ("dog", 255)):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(
                tmp_path / label / f"{i}.png"
            )
    data = load_dataset(DataSpec(path=tmp_path))
    assert isinstance(data.x, np.ndarray) and data.x.shape == (4, 1, 8, 8)
    assert data.classes == ("cat", "dog") and data.y is not None and data.y.tolist() == [0, 0, 1, 1]
    assert data.x.max() == 1.0


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "d.xls").write_text("x")
    with pytest.raises(DataError, match=r"expected \.csv, \.parquet"):
        load_dataset(DataSpec(path=tmp_path / "d.xls"))
    with pytest.raises(DataError, match="no such data file"):
        load_dataset(DataSpec(path=tmp_path / "none.csv"))


def test_shape_mismatch_between_sets() -> None:
    a = Dataset(x=np.zeros((2, 3), dtype=np.float32))
    b = Dataset(x=np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(DataError, match=r"expected samples of shape \(3,\), got \(4,\)"):
        check_compatible(b, a, "data.train")
