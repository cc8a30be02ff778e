"""Generate the Python gRPC code in appliance/_proto/ from the .proto files here.

The .proto files are the single source; the generated modules are committed so a
serving box needs no protoc. tests/test_protos.py regenerates into a temporary folder
and fails if the committed files differ. Run from anywhere:

    python protos/generate.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

PROTOS = Path(__file__).resolve().parent
DEFAULT_OUT = PROTOS.parent


def generate(out_root: Path = DEFAULT_OUT) -> list[Path]:
    """Compile every .proto here into ``out_root/appliance/_proto/``; return the files."""
    include = Path(protoc.__file__).parent / "_proto"
    sources = sorted(PROTOS.glob("*.proto"))
    target = out_root / "appliance" / "_proto"
    target.mkdir(parents=True, exist_ok=True)
    # The virtual include path makes the generated imports package-qualified
    # (`from appliance._proto import grpc_service_pb2`), not top-level.
    args = [
        "grpc_tools.protoc",
        f"-Iappliance/_proto={PROTOS}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        *[f"appliance/_proto/{src.name}" for src in sources],
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {[s.name for s in sources]}")
    _private_pool(target / "grpc_service_pb2.py")
    return sorted(p for p in target.iterdir() if p.name.endswith((".py", ".pyi")))


_DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = (
    "# Registered in a pool of its own, not the process-wide default: tritonclient\n"
    "# registers the same `inference.*` names there, and a process (a test, a client\n"
    "# app) must be able to import both. protos/generate.py writes this line.\n"
    "POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = POOL.AddSerializedFile("
)


def _private_pool(module: Path) -> None:
    text = module.read_text()
    if _DEFAULT_POOL not in text:
        raise SystemExit(f"{module}: generated code changed shape; cannot move it to its own pool")
    module.write_text(text.replace(_DEFAULT_POOL, _PRIVATE_POOL))
    stub = module.with_suffix(".pyi")
    if stub.exists():
        stub.write_text(
            stub.read_text()
            + "\nfrom google.protobuf import descriptor_pool as _descriptor_pool\n"
            + "POOL: _descriptor_pool.DescriptorPool\n"
        )


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for path in generate(out):
        print(path)
