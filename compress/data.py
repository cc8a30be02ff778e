"""Local data sets for the toolchain: tables, NumPy arrays, text lines and image folders.

Everything is read from disk (nothing downloaded) into a ``Dataset``: inputs, optional
labels, optional group names. Errors name the file and what was expected: a missing
column, a non-numeric feature, mismatched lengths.

Formats, by suffix:
- ``.csv``, ``.parquet``: feature columns (all but label/group, or ``features``) plus
  an optional label and group column; inputs become float32 (rows, features).
- ``.npz``: arrays ``x`` plus optional label/group arrays (named by the spec); ``.npy``: x only.
- ``.txt``: one text per line (embedding tasks); no labels.
- a folder: one subfolder per class holding images (PNG/JPEG, or ``.npy`` arrays);
  inputs become float32 (N, C, H, W) scaled to [0, 1], labels the subfolder index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compress.errors import DataError
from compress.recipe import DataSpec

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".npy"}


@dataclass(frozen=True)
class Dataset:
    """Inputs (an array, or texts), labels and group names, all of one length."""

    x: np.ndarray | list[str]
    y: np.ndarray | None = None
    groups: np.ndarray | None = None
    classes: tuple[str, ...] | None = None  # image folders: subfolder names, in label order

    def __len__(self) -> int:
        return len(self.x)

    def take(self, n: int) -> Dataset:
        """The first ``n`` samples."""
        return Dataset(
            x=self.x[:n],
            y=None if self.y is None else self.y[:n],
            groups=None if self.groups is None else self.groups[:n],
            classes=self.classes,
        )


def load_dataset(spec: DataSpec, path: Path | None = None) -> Dataset:
    """Load the data set ``spec`` describes (``path`` overrides ``spec.path`` once resolved)."""
    path = Path(path if path is not None else spec.path)
    if not path.exists():
        raise DataError(f"{path}: no such data file or folder")
    if path.is_dir():
        data = _load_image_folder(path)
    elif path.suffix in (".csv", ".parquet"):
        data = _load_table(path, spec)
    elif path.suffix in (".npz", ".npy"):
        data = _load_numpy(path, spec)
    elif path.suffix == ".txt":
        data = _load_text(path)
    else:
        raise DataError(
            f"{path}: expected .csv, .parquet, .npz, .npy, .txt or an image folder, "
            f"got {path.suffix or 'no suffix'}"
        )
    if len(data) == 0:
        raise DataError(f"{path}: expected at least one sample, found none")
    return data.take(spec.limit) if spec.limit else data


def _load_table(path: Path, spec: DataSpec) -> Dataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas raises many parser/IO error types
        raise DataError(f"{path}: could not read the table: {exc}") from exc
    columns = list(frame.columns)
    for role, column in (("label", spec.label), ("group", spec.group)):
        if (
            column is not None
            and column not in columns
            and not (role == "label" and column == "label")
        ):
            raise DataError(f"{path}: expected a {role} column {column!r}; columns are {columns}")
    reserved = {spec.label, spec.group}
    features = spec.features or [c for c in columns if c not in reserved]
    missing = [c for c in features if c not in columns]
    if missing:
        raise DataError(f"{path}: expected feature columns {missing}; columns are {columns}")
    non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise DataError(f"{path}: expected numeric features, got non-numeric columns {non_numeric}")
    if not features:
        raise DataError(f"{path}: expected at least one feature column, found none")
    y = frame[spec.label].to_numpy() if spec.label in columns else None
    groups = frame[spec.group].astype(str).to_numpy() if spec.group else None
    x = np.array(frame[features].to_numpy(np.float32), copy=True)  # parquet: read-only
    return Dataset(x=x, y=_labels(y, path), groups=groups)


def _labels(y: np.ndarray | None, path: Path) -> np.ndarray | None:
    if y is None:
        return None
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            return y.astype(np.int64)
        raise DataError(f"{path}: expected integer class labels, got {y.dtype}")
    return y.astype(np.int64)


def _load_numpy(path: Path, spec: DataSpec) -> Dataset:
    try:
        if path.suffix == ".npy":
            return Dataset(x=np.load(path, allow_pickle=False))
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays.files:
                raise DataError(f"{path}: expected an array named 'x', found {arrays.files}")
            x = arrays["x"]
            y = arrays[spec.label] if spec.label and spec.label in arrays.files else None
            if y is None and "y" in arrays.files:
                y = arrays["y"]
            groups = None
            if spec.group:
                if spec.group not in arrays.files:
                    raise DataError(
                        f"{path}: expected a group array {spec.group!r}, found {arrays.files}"
                    )
                groups = arrays[spec.group].astype(str)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: could not read the arrays: {exc}") from exc
    for name, array in (("labels", y), ("groups", groups)):
        if array is not None and len(array) != len(x):
            raise DataError(
                f"{path}: expected {len(x)} {name} (one per row of x), got {len(array)}"
            )
    x = x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x
    return Dataset(x=x, y=_labels(y, path), groups=groups)


def _load_text(path: Path) -> Dataset:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: expected UTF-8 text, one sample per line: {exc}") from exc
    return Dataset(x=[line for line in (raw.strip() for raw in lines) if line])


def _read_image(path: Path) -> np.ndarray:
    """(C, H, W) float32 in [0, 1]."""
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False).astype(np.float32)
    else:
        from PIL import Image

        with Image.open(path) as image:
            array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] in (1, 3, 4) and path.suffix != ".npy":
        array = array.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return np.asarray(array, dtype=np.float32)


def _load_image_folder(folder: Path) -> Dataset:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{folder}: expected one subfolder per class, found none")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        for file in sorted((folder / name).iterdir()):
            if file.suffix.lower() in _IMAGE_SUFFIXES:
                try:
                    images.append(_read_image(file))
                except (OSError, ValueError) as exc:
                    raise DataError(f"{file}: could not read the image: {exc}") from exc
                labels.append(index)
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise DataError(f"{folder}: expected images of one size, got shapes {sorted(shapes)}")
    return Dataset(x=np.stack(images), y=np.asarray(labels, dtype=np.int64), classes=tuple(classes))


def check_compatible(data: Dataset, reference: Dataset, what: str) -> None:
    """Eval/calibration data must have the training data's input shape and kind."""
    if isinstance(data.x, list) != isinstance(reference.x, list):
        raise DataError(f"{what}: expected the same kind of inputs (text vs arrays) as training")
    if (
        isinstance(data.x, np.ndarray)
        and isinstance(reference.x, np.ndarray)
        and data.x.shape[1:] != reference.x.shape[1:]
    ):
        raise DataError(
            f"{what}: expected samples of shape {reference.x.shape[1:]}, got {data.x.shape[1:]}"
        )


__all__ = ["Dataset", "check_compatible", "load_dataset"]
