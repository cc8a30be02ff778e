"""Credential echo: a token sent in the wrong form is refused without repeating any of it.

A client puts its token in ``authorization`` without ``Bearer``, or under another scheme.
It is refused UNAUTHENTICATED, and no part of the token (no 6 consecutive characters)
appears in the reply, the log or the audit file.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from appliance.security import hash_token
from tests._daemon import DaemonProcess

TOKEN = "kV3q9ZtX2mPw7LsB4nHc8RfJ1yDg6UeA0oTi5KxQaWz"


def _pieces(secret: str, size: int = 6) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    work = tmp_path_factory.mktemp("credentials")
    config = {
        "auth": {
            "enabled": True,
            "tokens": [{"name": "ris", "sha256": hash_token(TOKEN), "roles": ["infer"]}],
        },
        "lifecycle": {"audit_log": str(work / "audit.jsonl")},
        "logging": {"requests": "all"},
    }
    with DaemonProcess(work, config) as started:
        yield started


@pytest.mark.parametrize("header", [TOKEN, f"Basic {TOKEN}", f"Token {TOKEN}", f"{TOKEN} x"])
def test_a_malformed_authorization_header_is_not_echoed(daemon: DaemonProcess, header: str) -> None:
    audit = daemon.workdir / "audit.jsonl"
    with daemon.channel() as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelMetadata(
                pb.ModelMetadataRequest(name="breast_cancer"),
                metadata=(("authorization", header),),
                timeout=30,
            )
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "expected an 'authorization: Bearer TOKEN' header" in refused.value.details()
    written = refused.value.details() + daemon.log_text() + audit.read_text()
    assert "auth.refused" in audit.read_text()
    leaked = [piece for piece in _pieces(TOKEN) if piece in written]
    assert leaked == []
