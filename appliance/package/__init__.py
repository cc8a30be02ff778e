"""The model package (``NAME-VERSION.apkg``): manifest, build, sign, verify."""

from appliance.package.manifest import (
    FORMAT,
    MANIFEST_NAME,
    MODEL_NAME,
    SIGNATURE_NAME,
    Golden,
    GoldenCase,
    Manifest,
    Provenance,
    TensorData,
    TensorSpec,
    read_manifest,
    write_manifest,
)

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "MODEL_NAME",
    "SIGNATURE_NAME",
    "Golden",
    "GoldenCase",
    "Manifest",
    "Provenance",
    "TensorData",
    "TensorSpec",
    "read_manifest",
    "write_manifest",
]
