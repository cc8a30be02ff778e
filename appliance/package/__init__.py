"""The model package (``NAME-VERSION.apkg``): manifest, build, sign, verify.

Public API: the manifest schema, ``generate_keypair``, ``sign_folder``/``verify_folder``,
``build_package``/``unpack_package``/``verify_package``, ``make_golden`` and
``make_reference_profile``. Extraction is safe against hostile archives; every failure
is a ``PackageError`` (``SignatureError`` for signature failures).
"""

from appliance.package.build import (
    PACKAGE_SUFFIX,
    build_package,
    package_filename,
    specs_from_onnx,
    unpack_package,
    verify_package,
)
from appliance.package.golden import make_golden, make_reference_profile
from appliance.package.keys import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, generate_keypair
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
from appliance.package.signing import sign_folder, verify_folder

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "MODEL_NAME",
    "PACKAGE_SUFFIX",
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "SIGNATURE_NAME",
    "Golden",
    "GoldenCase",
    "Manifest",
    "Provenance",
    "TensorData",
    "TensorSpec",
    "build_package",
    "generate_keypair",
    "make_golden",
    "make_reference_profile",
    "package_filename",
    "read_manifest",
    "sign_folder",
    "specs_from_onnx",
    "unpack_package",
    "verify_folder",
    "verify_package",
    "write_manifest",
]
