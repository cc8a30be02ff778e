"""All protobuf conversion for the inference service: ``from_proto`` / ``to_proto`` pairs.

The core (``appliance.model``, ``appliance.manager``) sees plain dataclasses and numpy
arrays; this module is the only one that knows the V2 message layout. Outputs always
go back as ``raw_output_contents`` (tritonclient decodes only those).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from appliance._proto import grpc_service_pb2 as pb
from appliance.clip import clip, quoted
from appliance.errors import ApplianceError, InvalidInputError, Status
from appliance.manager import IndexEntry, Served
from appliance.model import Array, LoadedModel, RequestTensor, Statistics
from appliance.package.manifest import TensorSpec
from appliance.tensors import encode

# V2 datatype -> the InferTensorContents field that carries it (FP16/BF16: raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_CONFIG_TYPES = {
    "BOOL": pb.TYPE_BOOL,
    "UINT8": pb.TYPE_UINT8,
    "UINT16": pb.TYPE_UINT16,
    "UINT32": pb.TYPE_UINT32,
    "UINT64": pb.TYPE_UINT64,
    "INT8": pb.TYPE_INT8,
    "INT16": pb.TYPE_INT16,
    "INT32": pb.TYPE_INT32,
    "INT64": pb.TYPE_INT64,
    "FP16": pb.TYPE_FP16,
    "FP32": pb.TYPE_FP32,
    "FP64": pb.TYPE_FP64,
    "BYTES": pb.TYPE_STRING,
    "BF16": pb.TYPE_BF16,
}


def request_tensors_from_proto(request: pb.ModelInferRequest) -> list[RequestTensor]:
    """Pair each input with its raw bytes or typed values; nothing is decoded yet."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries, expected one per input "
            f"({len(request.inputs)})"
        )
    tensors = []
    for i, tensor in enumerate(request.inputs):
        shape = tuple(tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInputError(
                    f"input {quoted(tensor.name)} has both contents and raw_input_contents; "
                    "expected one of them"
                )
            tensors.append(RequestTensor(tensor.name, tensor.datatype, shape, raw=raw[i]))
        else:
            tensors.append(
                RequestTensor(tensor.name, tensor.datatype, shape, values=_typed(tensor))
            )
    return tensors


def _typed(tensor: pb.ModelInferRequest.InferInputTensor) -> Sequence[Any]:
    field = _CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        # FP16/BF16 or an unknown name: the model check reports the datatype mismatch
        # first, or this says typed contents cannot carry it.
        return ()
    values: Sequence[Any] = getattr(tensor.contents, field)
    return values


def requested_outputs_from_proto(request: pb.ModelInferRequest) -> list[str]:
    return [o.name for o in request.outputs]


def infer_response_to_proto(
    model: Served, request_id: str, outputs: dict[str, Array]
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(
        model_name=model.name, model_version=str(model.version), id=request_id
    )
    specs = {s.name: s for s in model.spec.outputs}
    for name, array in outputs.items():
        tensor = response.outputs.add()
        tensor.name = name
        tensor.datatype = specs[name].datatype
        tensor.shape.extend(array.shape)
        response.raw_output_contents.append(encode(array))
    return response


#: Triton's decoupled-streaming parameters: on every response, and on a request.
FINAL_RESPONSE = "triton_final_response"
EMPTY_FINAL_RESPONSE = "triton_enable_empty_final_response"


def wants_empty_final_response(request: pb.ModelInferRequest) -> bool:
    """The client asked for an output-less final response (tritonclient's
    ``enable_empty_final_response``)."""
    parameter = request.parameters.get(EMPTY_FINAL_RESPONSE)
    return parameter is not None and parameter.bool_param


def piece_response_to_proto(
    model: Served, request_id: str, outputs: dict[str, Array], final: bool
) -> pb.ModelStreamInferResponse:
    """One response of a decoupled stream: its outputs and whether it is the last."""
    response = infer_response_to_proto(model, request_id, outputs)
    response.parameters[FINAL_RESPONSE].bool_param = final
    return pb.ModelStreamInferResponse(infer_response=response)


def empty_final_response_to_proto(model: Served, request_id: str) -> pb.ModelStreamInferResponse:
    response = pb.ModelInferResponse(
        model_name=model.name, model_version=str(model.version), id=request_id
    )
    response.parameters[FINAL_RESPONSE].bool_param = True
    return pb.ModelStreamInferResponse(infer_response=response)


def stream_error_to_proto(
    exc: ApplianceError, request: pb.ModelInferRequest
) -> pb.ModelStreamInferResponse:
    """A stream message that failed: its status and message in ``error_message``, and the
    request's id, so the client can tell which one (the model name is cut)."""
    return pb.ModelStreamInferResponse(
        error_message=f"{exc.status.value}: {exc}",
        infer_response=pb.ModelInferResponse(model_name=clip(request.model_name), id=request.id),
    )


_STATUS_NAMES = frozenset(s.value for s in Status)


def stream_error_status(message: str) -> str:
    """The status name ``stream_error_to_proto`` wrote, or OK for no error."""
    if not message:
        return "OK"
    name = message.partition(":")[0]
    return name if name in _STATUS_NAMES else "UNKNOWN"


def _tensor_metadata(specs: Iterable[TensorSpec]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(name=s.name, datatype=s.datatype, shape=s.shape)
        for s in specs
    ]


def model_metadata_to_proto(model: Served, versions: Sequence[int]) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=model.name,
        versions=[str(v) for v in versions],
        platform=model.spec.platform,
        inputs=_tensor_metadata(model.spec.inputs),
        outputs=_tensor_metadata(model.spec.outputs),
    )


def model_config_to_proto(model: Served) -> pb.ModelConfigResponse:
    spec = model.spec
    # Triton reports dims without the batch axis when max_batch_size > 0.
    skip = 1 if spec.max_batch_size > 0 else 0
    config = pb.ModelConfig(
        name=spec.name,
        platform=spec.platform,
        backend="onnxruntime" if isinstance(model, LoadedModel) else spec.platform,
        max_batch_size=spec.max_batch_size,
        input=[
            pb.ModelInput(name=s.name, data_type=_CONFIG_TYPES[s.datatype], dims=s.shape[skip:])
            for s in spec.inputs
        ],
        output=[
            pb.ModelOutput(name=s.name, data_type=_CONFIG_TYPES[s.datatype], dims=s.shape[skip:])
            for s in spec.outputs
        ],
    )
    if isinstance(model, LoadedModel) and model.settings.enabled:
        config.dynamic_batching.max_queue_delay_microseconds = model.settings.max_queue_delay_us
    config.parameters["execution_providers"].string_value = ",".join(model.providers)
    if spec.labels:
        config.parameters["labels"].string_value = ",".join(spec.labels)
    return pb.ModelConfigResponse(config=config)


def _duration(count: int, ns: int) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=count, ns=ns)


def statistics_to_proto(models: Iterable[Served]) -> pb.ModelStatisticsResponse:
    response = pb.ModelStatisticsResponse()
    for model in models:
        s: Statistics = model.stats
        with s.lock:
            entry = response.model_stats.add(
                name=model.name,
                version=str(model.version),
                last_inference=s.last_inference_ms,
                inference_count=s.inference_count,
                execution_count=s.execution_count,
            )
            stats = entry.inference_stats
            stats.success.CopyFrom(_duration(s.success_count, s.success_ns))
            stats.fail.CopyFrom(_duration(s.fail_count, s.fail_ns))
            stats.queue.CopyFrom(_duration(s.queue_count, s.queue_ns))
            stats.compute_infer.CopyFrom(_duration(s.compute_count, s.compute_ns))
            for rows, runs in sorted(s.batches.items()):
                entry.batch_stats.add(
                    batch_size=rows, compute_infer=_duration(runs, s.batch_ns[rows])
                )
    return response


def index_to_proto(entries: Iterable[IndexEntry], ready_only: bool) -> pb.RepositoryIndexResponse:
    response = pb.RepositoryIndexResponse()
    for e in entries:
        if ready_only and e.state != "READY":
            continue
        response.models.add(name=e.name, version=str(e.version), state=e.state, reason=e.reason)
    return response
