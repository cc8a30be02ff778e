"""Site data: the three formats load, and every bad input says what was expected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from federated.data import data_path_from_node_config, load_site_data
from federated.errors import (
    SettingsError,
    SiteDataFormatError,
    SiteDataMissingError,
    UnknownLabelError,
)
from federated.settings import ModelKind, RunSettings

TABULAR = RunSettings()
IMAGES = RunSettings(model=ModelKind.SMALL_CNN, input_shape=(1, 8, 8), labels=("cat", "dog"))


def test_csv_parquet_and_npz_load_the_same_rows(
    breast_cancer: tuple[np.ndarray, np.ndarray], tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    x, y = breast_cancer[0][:40], breast_cancer[1][:40]
    csv = write_csv(x, y)
    parquet = tmp_path / "site.parquet"
    pd.read_csv(csv).to_parquet(parquet)
    npz = tmp_path / "site.npz"
    np.savez(npz, x=x, y=y)
    for path in (csv, parquet, npz):
        data = load_site_data(path, TABULAR)
        assert data.x.shape == (40, 30) and data.x.dtype == np.float32
        np.testing.assert_allclose(data.x, x, rtol=1e-6)
        np.testing.assert_array_equal(data.y, y)


def test_string_labels_map_to_logit_order(tmp_path: Path) -> None:
    path = tmp_path / "site.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": ["malignant", "benign", "benign"]}).to_csv(
        path, index=False
    )
    settings = RunSettings(input_shape=(1,), labels=("benign", "malignant"))
    assert load_site_data(path, settings).y.tolist() == [1, 0, 0]


def test_image_folder_one_subfolder_per_class(tmp_path: Path) -> None:
    for label, value in (("cat", 0), ("dog", 255)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((16, 16), value, np.uint8)).save(tmp_path / label / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    data = load_site_data(tmp_path, IMAGES)
    assert data.x.shape == (6, 1, 8, 8)  # resized to the model's input
    assert data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.x.min() == 0.0 and data.x.max() == 1.0


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SiteDataMissingError, match=r"not found at .*nothing\.csv"):
        load_site_data(tmp_path / "nothing.csv", TABULAR)


def test_node_config_without_data_path_explains_the_flag() -> None:
    with pytest.raises(SettingsError, match="--node-config 'data-path="):
        data_path_from_node_config({})


def test_csv_without_label_column(tmp_path: Path) -> None:
    path = tmp_path / "site.csv"
    pd.DataFrame({"a": [1.0], "target": [0]}).to_csv(path, index=False)
    with pytest.raises(SiteDataFormatError, match=r"'label' column, got columns \['a', 'target'\]"):
        load_site_data(path, TABULAR)


def test_wrong_number_of_feature_columns(
    breast_cancer: tuple[np.ndarray, np.ndarray], write_csv: Callable[..., Path]
) -> None:
    path = write_csv(breast_cancer[0][:5, :29], breast_cancer[1][:5])
    with pytest.raises(
        SiteDataFormatError, match=r"expected 30 feature columns .* got shape \(29,\)"
    ):
        load_site_data(path, TABULAR)


def test_non_numeric_feature_column(tmp_path: Path) -> None:
    path = tmp_path / "site.csv"
    pd.DataFrame({"a": ["x", "y"], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(SiteDataFormatError, match=r"non-numeric column\(s\) \['a'\]"):
        load_site_data(path, RunSettings(input_shape=(1,)))


def test_label_the_model_does_not_know(
    breast_cancer: tuple[np.ndarray, np.ndarray], write_csv: Callable[..., Path]
) -> None:
    y = breast_cancer[1][:10].copy()
    y[3] = 7
    path = write_csv(breast_cancer[0][:10], y)
    with pytest.raises(UnknownLabelError, match=r"label\(s\) '7' .* expected one of '0', '1'"):
        load_site_data(path, TABULAR)


def test_npz_without_y(tmp_path: Path) -> None:
    path = tmp_path / "site.npz"
    np.savez(path, x=np.zeros((3, 30)), labels=np.zeros(3))
    with pytest.raises(SiteDataFormatError, match=r"expected arrays 'x' and 'y'.*missing \['y'\]"):
        load_site_data(path, TABULAR)


def test_npz_with_mismatched_lengths(tmp_path: Path) -> None:
    path = tmp_path / "site.npz"
    np.savez(path, x=np.zeros((3, 30)), y=np.zeros(4))
    with pytest.raises(SiteDataFormatError, match=r"got x \(3, 30\) and y \(4,\)"):
        load_site_data(path, TABULAR)


def test_nan_features_are_refused(tmp_path: Path) -> None:
    x = np.zeros((4, 30))
    x[2, 5] = np.nan
    path = tmp_path / "site.npz"
    np.savez(path, x=x, y=np.zeros(4))
    with pytest.raises(SiteDataFormatError, match=r"NaN or infinity in 1 row\(s\)"):
        load_site_data(path, TABULAR)


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "site.xlsx"
    path.write_bytes(b"")
    with pytest.raises(SiteDataFormatError, match=r"got a \.xlsx file"):
        load_site_data(path, TABULAR)


def test_image_folder_for_a_tabular_model(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    with pytest.raises(SiteDataFormatError, match="run trains tabular-mlp"):
        load_site_data(tmp_path, TABULAR)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "site.npz"
    np.savez(path, x=np.zeros((0, 30)), y=np.zeros(0))
    with pytest.raises(SiteDataFormatError, match="at least one row, got 0"):
        load_site_data(path, TABULAR)
