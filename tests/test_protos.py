"""The .proto files are the single source, and our V2 service is Triton's on the wire."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import tritonclient.grpc.model_config_pb2 as triton_config
import tritonclient.grpc.service_pb2 as triton_service
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor

from appliance._proto import grpc_service_pb2 as ours

ROOT = Path(__file__).resolve().parents[1]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_in_sync_with_the_protos(tmp_path: Path) -> None:
    generated = _load_generator().generate(tmp_path)
    committed = ROOT / "appliance" / "_proto"
    stale = []
    for fresh in generated:
        if not fresh.name.endswith("_pb2.py"):
            continue
        old = committed / fresh.name
        # Compare what the code registers (the serialized descriptor), not the comments
        # and version stamps that differ between grpcio-tools releases.
        if not old.exists() or _serialized(fresh) != _serialized(old):
            stale.append(fresh.name)
    assert not stale, f"regenerate with `python protos/generate.py`: {stale} differ"
    assert {p.name for p in generated} <= {p.name for p in committed.iterdir()}


def _serialized(path: Path) -> bytes:
    text = path.read_text()
    marker = "AddSerializedFile("
    start = text.index(marker) + len(marker)
    end = text.index(")\n", start)
    value = eval(text[start:end], {})  # a bytes literal written by protoc
    assert isinstance(value, bytes)
    return value


def _messages(file: FileDescriptor) -> dict[str, Descriptor]:
    found: dict[str, Descriptor] = {}

    def walk(d: Descriptor) -> None:
        found[d.full_name] = d
        for nested in d.nested_types:
            walk(nested)

    for d in file.message_types_by_name.values():
        walk(d)
    return found


def _field_signature(d: Descriptor) -> dict[str, tuple[int, int, bool, str]]:
    return {
        f.name: (
            f.number,
            f.type,
            f.is_repeated,
            (f.message_type or f.enum_type).full_name if (f.message_type or f.enum_type) else "",
        )
        for f in d.fields
    }


OUR_MESSAGES = _messages(ours.DESCRIPTOR)
TRITON_MESSAGES = {**_messages(triton_service.DESCRIPTOR), **_messages(triton_config.DESCRIPTOR)}


@pytest.mark.parametrize("name", sorted(OUR_MESSAGES))
def test_every_field_matches_triton_on_the_wire(name: str) -> None:
    theirs = TRITON_MESSAGES.get(name)
    assert theirs is not None, f"{name} does not exist in Triton's protocol"
    ours_fields = _field_signature(OUR_MESSAGES[name])
    their_fields = _field_signature(theirs)
    for field, signature in ours_fields.items():
        assert their_fields.get(field) == signature, f"{name}.{field}"


def test_the_rpcs_match_triton() -> None:
    service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton_service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == theirs.full_name == "inference.GRPCInferenceService"
    for method in service.methods:
        other = theirs.methods_by_name[method.name]
        assert method.input_type.full_name == other.input_type.full_name
        assert method.output_type.full_name == other.output_type.full_name
        assert method.client_streaming == other.client_streaming
        assert method.server_streaming == other.server_streaming
    required = {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    }
    assert required <= set(service.methods_by_name)


def test_datatype_enum_matches_triton() -> None:
    ours_enum: EnumDescriptor = ours.DESCRIPTOR.enum_types_by_name["DataType"]
    theirs = triton_config.DESCRIPTOR.enum_types_by_name["DataType"]
    assert {v.name: v.number for v in ours_enum.values} == {v.name: v.number for v in theirs.values}


def test_our_descriptors_do_not_touch_the_default_pool() -> None:
    # tritonclient registers inference.* in the default pool; so must we not.
    assert "tritonclient.grpc.service_pb2" in sys.modules
    assert ours.DESCRIPTOR.pool is ours.POOL
