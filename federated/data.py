"""A site's local data: find it from node config ``data-path``, read it, validate it.

Owns the three site formats DESIGN.md fixes and the checks that give an operator a
clear error (what was expected, what arrived) before any training starts:

- a CSV or Parquet file: feature columns plus a ``label`` column;
- a folder with one subfolder per class, holding images (``.png``, ``.jpg``, ...);
- an ``.npz`` file holding ``x`` and ``y``.

It never sends anything anywhere: the ClientApp calls it and keeps the arrays local.
Labels are matched as text against the run's ``labels`` (``1.0`` in a CSV matches "1").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from federated.errors import (
    SettingsError,
    SiteDataFormatError,
    SiteDataMissingError,
    UnknownLabelError,
)
from federated.settings import ModelKind, RunSettings, UserConfigValue

LABEL_COLUMN = "label"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class SiteData:
    """Validated local data: ``x`` is (n, *input_shape) float32, ``y`` is (n,) int64."""

    x: NDArray[np.float32]
    y: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.y.shape[0])


def data_path_from_node_config(node_config: dict[str, UserConfigValue]) -> Path:
    """The site's ``data-path``, as the SuperNode's ``--node-config`` gave it."""
    raw = node_config.get("data-path")
    if not isinstance(raw, str) or not raw:
        raise SettingsError(
            "node config 'data-path': expected the path of the site's data, got "
            f"{raw!r}; start the SuperNode with --node-config 'data-path=\"/path/to/data\"'"
        )
    return Path(raw)


def load_site_data(path: Path, settings: RunSettings) -> SiteData:
    """Read and validate the data at ``path`` for the model ``settings`` describe."""
    if not path.exists():
        raise SiteDataMissingError(
            f"site data not found at {str(path)!r}: expected a .csv, .parquet or .npz file "
            "or a folder with one subfolder per class"
        )
    if path.is_dir():
        x, raw_labels = _read_image_folder(path, settings)
    elif path.suffix.lower() in {".csv", ".parquet", ".pq"}:
        x, raw_labels = _read_table(path)
    elif path.suffix.lower() == ".npz":
        x, raw_labels = _read_npz(path)
    else:
        raise SiteDataFormatError(
            f"site data {path.name!r}: expected a .csv, .parquet or .npz file or an image "
            f"folder, got a {path.suffix or 'suffix-less'} file"
        )
    if x.shape[0] == 0:
        raise SiteDataFormatError(f"site data {path.name!r}: expected at least one row, got 0")
    if not np.isfinite(x).all():
        raise SiteDataFormatError(
            f"site data {path.name!r}: expected finite numbers, got NaN or infinity in "
            f"{int((~np.isfinite(x)).any(axis=tuple(range(1, x.ndim))).sum())} row(s)"
        )
    return SiteData(
        x=_shape_features(x, settings, path.name), y=encode_labels(raw_labels, settings)
    )


def encode_labels(raw: NDArray[np.generic], settings: RunSettings) -> NDArray[np.int64]:
    """Map each raw label to its index in ``settings.labels``; unknown ones are an error."""
    index = {name: i for i, name in enumerate(settings.labels)}
    texts = [_label_text(v) for v in raw.tolist()]
    unknown = sorted(set(texts) - index.keys())
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise UnknownLabelError(
            f"site data has label(s) {shown} the model does not know: expected one of "
            f"{', '.join(repr(n) for n in settings.labels)}"
        )
    return np.asarray([index[t] for t in texts], dtype=np.int64)


def _label_text(value: object) -> str:
    # CSV readers turn 1 into 1.0 when a column has NaN; compare integral floats as ints.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode()
    return str(value).strip()


def _read_table(path: Path) -> tuple[NDArray[np.float32], NDArray[np.generic]]:
    import pandas as pd  # the [federated] extra; imported here to keep module import light

    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError, ImportError) as exc:
        raise SiteDataFormatError(f"site data {path.name!r} could not be read: {exc}") from exc
    if LABEL_COLUMN not in frame.columns:
        raise SiteDataFormatError(
            f"site data {path.name!r}: expected feature columns plus a {LABEL_COLUMN!r} "
            f"column, got columns {list(map(str, frame.columns))[:10]}"
        )
    features = frame.drop(columns=[LABEL_COLUMN])
    non_numeric = [
        str(c) for c, t in features.dtypes.items() if not pd.api.types.is_numeric_dtype(t)
    ]
    if non_numeric:
        raise SiteDataFormatError(
            f"site data {path.name!r}: expected numeric feature columns, got non-numeric "
            f"column(s) {non_numeric[:10]}"
        )
    labels = frame[LABEL_COLUMN]
    if labels.isna().any():
        raise SiteDataFormatError(
            f"site data {path.name!r}: expected a label in every row, got "
            f"{int(labels.isna().sum())} empty label(s)"
        )
    return features.to_numpy(dtype=np.float32), labels.to_numpy()


def _read_npz(path: Path) -> tuple[NDArray[np.float32], NDArray[np.generic]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = sorted({"x", "y"} - set(archive.files))
            if missing:
                raise SiteDataFormatError(
                    f"site data {path.name!r}: expected arrays 'x' and 'y', got "
                    f"{sorted(archive.files)} (missing {missing})"
                )
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError) as exc:
        raise SiteDataFormatError(f"site data {path.name!r} could not be read: {exc}") from exc
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise SiteDataFormatError(
            f"site data {path.name!r}: expected y of shape (n,) matching x's first "
            f"dimension, got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise SiteDataFormatError(f"site data {path.name!r}: expected numeric x, got {x.dtype}")
    return x.astype(np.float32), y


def _read_image_folder(
    path: Path, settings: RunSettings
) -> tuple[NDArray[np.float32], NDArray[np.generic]]:
    from PIL import Image, UnidentifiedImageError

    if settings.model is not ModelKind.SMALL_CNN:
        raise SiteDataFormatError(
            f"site data {path.name!r} is an image folder, but the run trains "
            f"{settings.model.value}: expected a .csv, .parquet or .npz file"
        )
    channels, height, width = settings.input_shape
    mode = "L" if channels == 1 else "RGB"
    images: list[NDArray[np.float32]] = []
    labels: list[str] = []
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir())
    if not class_dirs:
        raise SiteDataFormatError(
            f"site data folder {path.name!r}: expected one subfolder per class, got none"
        )
    for class_dir in class_dirs:
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as img:
                    # Images of another size are resized: sites rarely share a scanner.
                    pixels = np.asarray(img.convert(mode).resize((width, height)))
            except (OSError, UnidentifiedImageError) as exc:
                raise SiteDataFormatError(f"image {file.name!r} could not be read: {exc}") from exc
            images.append(pixels.astype(np.float32) / 255.0)
            labels.append(class_dir.name)
    if not images:
        raise SiteDataFormatError(
            f"site data folder {path.name!r}: expected image files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}) in its class subfolders, got none"
        )
    x = np.stack(images)  # (n, H, W) or (n, H, W, C)
    x = x[:, None] if channels == 1 else x.transpose(0, 3, 1, 2)  # -> (n, C, H, W)
    return x, np.asarray(labels)


def _shape_features(
    x: NDArray[np.float32], settings: RunSettings, name: str
) -> NDArray[np.float32]:
    """Check per-example shape against the model, unflattening images stored as rows."""
    expected = settings.input_shape
    per_example = tuple(x.shape[1:])
    if per_example == expected:
        return np.ascontiguousarray(x, dtype=np.float32)
    size = int(np.prod(expected))
    single_channel_image = len(expected) == 3 and expected[0] == 1 and per_example == expected[1:]
    if single_channel_image or per_example == (size,):
        return np.ascontiguousarray(x.reshape((x.shape[0], *expected)), dtype=np.float32)
    what = "feature columns" if len(expected) == 1 else "values per example"
    raise SiteDataFormatError(
        f"site data {name!r}: expected {size} {what} (shape {expected}), got shape {per_example}"
    )


__all__ = [
    "LABEL_COLUMN",
    "SiteData",
    "data_path_from_node_config",
    "encode_labels",
    "load_site_data",
]
