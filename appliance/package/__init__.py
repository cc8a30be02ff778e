"""The model package (``NAME-VERSION.apkg``): manifest, build, sign, verify.

Public API: the manifest schema, ``generate_keypair``, ``sign_folder``/``verify_folder``,
``build_package``/``build_generative_package``/``unpack_package``/``verify_package``,
``verify_model_folder`` and ``check_unsigned_folder`` (version folders on disk),
``make_golden`` (``make_generation_golden`` for a generative folder) and
``make_reference_profile``. Extraction is safe against hostile archives; every failure
is a ``PackageError`` (``SignatureError`` for signature failures).

Names load on first use (PEP 562): the serving core reads manifests without paying for
model-signing and its sigstore stack, which take seconds to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_SOURCES = {
    "FORMAT": "appliance.package.manifest",
    "Golden": "appliance.package.manifest",
    "GoldenCase": "appliance.package.manifest",
    "MANIFEST_NAME": "appliance.package.manifest",
    "MODEL_NAME": "appliance.package.manifest",
    "Manifest": "appliance.package.manifest",
    "PACKAGE_SUFFIX": "appliance.package.build",
    "PRIVATE_KEY_NAME": "appliance.package.keys",
    "PUBLIC_KEY_NAME": "appliance.package.keys",
    "Provenance": "appliance.package.manifest",
    "SIGNATURE_NAME": "appliance.package.manifest",
    "TensorData": "appliance.package.manifest",
    "TensorSpec": "appliance.package.manifest",
    "GenerationCase": "appliance.package.manifest",
    "GenerationGolden": "appliance.package.manifest",
    "TEXT_GENERATION": "appliance.package.manifest",
    "build_generative_package": "appliance.package.build",
    "build_package": "appliance.package.build",
    "make_generation_golden": "appliance.package.generative",
    "check_unsigned_folder": "appliance.package.build",
    "generate_keypair": "appliance.package.keys",
    "make_golden": "appliance.package.golden",
    "make_reference_profile": "appliance.package.golden",
    "package_filename": "appliance.package.build",
    "read_manifest": "appliance.package.manifest",
    "sign_folder": "appliance.package.signing",
    "specs_from_onnx": "appliance.package.build",
    "unpack_package": "appliance.package.build",
    "verify_folder": "appliance.package.signing",
    "verify_model_folder": "appliance.package.build",
    "verify_package": "appliance.package.build",
    "write_manifest": "appliance.package.manifest",
}

if TYPE_CHECKING:
    from appliance.package.build import (
        PACKAGE_SUFFIX,
        build_generative_package,
        build_package,
        check_unsigned_folder,
        package_filename,
        specs_from_onnx,
        unpack_package,
        verify_model_folder,
        verify_package,
    )
    from appliance.package.generative import make_generation_golden
    from appliance.package.golden import make_golden, make_reference_profile
    from appliance.package.keys import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, generate_keypair
    from appliance.package.manifest import (
        FORMAT,
        MANIFEST_NAME,
        MODEL_NAME,
        SIGNATURE_NAME,
        TEXT_GENERATION,
        GenerationCase,
        GenerationGolden,
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


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'appliance.package' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value


__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "MODEL_NAME",
    "PACKAGE_SUFFIX",
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "SIGNATURE_NAME",
    "TEXT_GENERATION",
    "GenerationCase",
    "GenerationGolden",
    "Golden",
    "GoldenCase",
    "Manifest",
    "Provenance",
    "TensorData",
    "TensorSpec",
    "build_generative_package",
    "build_package",
    "check_unsigned_folder",
    "generate_keypair",
    "make_generation_golden",
    "make_golden",
    "make_reference_profile",
    "package_filename",
    "read_manifest",
    "sign_folder",
    "specs_from_onnx",
    "unpack_package",
    "verify_folder",
    "verify_model_folder",
    "verify_package",
    "write_manifest",
]
