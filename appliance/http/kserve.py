"""KServe V2 REST routes as Triton serves them, thin over the model manager.

Health, server and model metadata, readiness, infer (JSON tensors and the binary
extension, ``v2_codec``), model configuration, statistics and the repository index
(https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md,
and Triton's extensions). Each route parses, calls the same core as the gRPC servicer
(``ModelManager``), and encodes: one serving path for both ports. Errors are the gate's
to answer (``appliance.http.app``), in Triton's body ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from appliance import __version__
from appliance.errors import ApplianceError, status_name
from appliance.http import v2_codec
from appliance.http.app import DESCRIBED, SERVED_VERSION, Described, Route, read_body
from appliance.http.errors import MessageTooLargeError
from appliance.manager import ModelManager, Served
from appliance.model import LoadedModel
from appliance.package.manifest import TensorSpec
from appliance.servicers.inference import EXTENSIONS, SERVER_NAME

if TYPE_CHECKING:
    from appliance.monitoring import RequestRecorder

_JSON = "application/json"
_MODEL = "/v2/models/{name}"
_VERSION = "/v2/models/{name}/versions/{version}"


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(value).encode(), content_type=_JSON)


def _target(request: web.Request) -> tuple[str, str]:
    return request.match_info["name"], request.match_info.get("version", "")


class KServeRoutes:
    def __init__(
        self,
        manager: ModelManager,
        is_ready: Callable[[], bool],
        recorder: RequestRecorder,
        max_message_bytes: int,
    ):
        self._manager = manager
        self._is_ready = is_ready
        self._recorder = recorder
        self._limit = max_message_bytes

    def routes(self) -> list[Route]:
        get, post = "GET", "POST"
        routes = [
            Route(get, "/v2/health/live", self.live, "GET /v2/health/live", "v2", role=None),
            Route(get, "/v2/health/ready", self.ready, "GET /v2/health/ready", "v2", role=None),
            Route(get, "/v2", self.server_metadata, "GET /v2", "v2"),
            Route(post, "/v2/repository/index", self.index, "POST /v2/repository/index", "v2"),
            Route(get, "/v2/models/stats", self.statistics, "GET /v2/models/stats", "v2"),
        ]
        for base in (_MODEL, _VERSION):
            routes += [
                Route(get, base, self.model_metadata, f"GET {base}", "v2"),
                Route(get, f"{base}/ready", self.model_ready, f"GET {base}/ready", "v2"),
                Route(post, f"{base}/infer", self.infer, f"POST {base}/infer", "v2"),
                Route(get, f"{base}/config", self.model_config, f"GET {base}/config", "v2"),
                Route(get, f"{base}/stats", self.statistics, f"GET {base}/stats", "v2"),
            ]
        return routes

    # -- health and metadata -----------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def ready(self, request: web.Request) -> web.Response:
        # tritonclient reads the status only: 200 ready, anything else not.
        return web.Response(status=200 if self._is_ready() else 503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})

    async def model_metadata(self, request: web.Request) -> web.Response:
        name, version = _target(request)
        request[DESCRIBED] = Described(name, version)
        model = self._manager.get(name, version)
        versions = [str(m.version) for m in self._manager.loaded() if m.name == model.name]
        return _json(
            {
                "name": model.name,
                "versions": versions,
                "platform": model.spec.platform,
                "inputs": [_tensor(s) for s in model.spec.inputs],
                "outputs": [_tensor(s) for s in model.spec.outputs],
            }
        )

    async def model_ready(self, request: web.Request) -> web.Response:
        name, version = _target(request)
        try:
            ready = self._manager.get(name, version).ready
        except ApplianceError:
            ready = False
        return web.Response(status=200 if ready else 503)

    async def model_config(self, request: web.Request) -> web.Response:
        name, version = _target(request)
        return _json(_config(self._manager.get(name, version)))

    async def statistics(self, request: web.Request) -> web.Response:
        name, version = request.match_info.get("name", ""), request.match_info.get("version", "")
        if not name:
            models = self._manager.loaded()
        elif version:
            models = [self._manager.get(name, version)]
        else:
            self._manager.get(name)  # 404 for an unknown name
            models = [m for m in self._manager.loaded() if m.name == name]
        return _json({"model_stats": [_statistics(m) for m in models]})

    async def index(self, request: web.Request) -> web.Response:
        body = await read_body(request, self._limit)
        ready_only = False
        if body.strip():
            try:
                ready_only = json.loads(body).get("ready") is True
            except (ValueError, AttributeError):
                ready_only = False
        entries = [
            {"name": e.name, "version": str(e.version), "state": e.state, "reason": e.reason}
            for e in self._manager.index()
            if not ready_only or e.state == "READY"
        ]
        return _json(entries)

    # -- inference ---------------------------------------------------------------

    async def infer(self, request: web.Request) -> web.Response:
        name, version = _target(request)
        request[DESCRIBED] = Described(name, version)
        start = time.perf_counter()
        try:
            response = await self._infer(request, name, version)
        except BaseException as exc:  # observed, then on to the gate's boundary
            self._record(name, version, status_name(exc), start)
            raise
        self._record(name, version, "OK", start, request[SERVED_VERSION])
        return response

    async def _infer(self, request: web.Request, name: str, version: str) -> web.Response:
        body = await read_body(request, self._limit)
        parsed = v2_codec.parse_infer(body, request.headers.get(v2_codec.HEADER_LENGTH))
        request[DESCRIBED] = Described(name, version, parsed.tensors)
        deadline = time.monotonic() + parsed.timeout_us / 1e6 if parsed.timeout_us else None
        model, outputs = await self._manager.infer(
            name, version, parsed.tensors, parsed.outputs, deadline
        )
        request[SERVED_VERSION] = str(model.version)
        encoded = v2_codec.encode_infer(
            model.name, model.version, parsed, outputs, model.spec.outputs
        )
        if len(encoded.body) > self._limit:
            raise MessageTooLargeError(
                f"response of {len(encoded.body)} bytes is over the limit of {self._limit} "
                "(server.max_message_bytes); ask for fewer rows or outputs"
            )
        if encoded.header_length is None:
            return web.Response(body=encoded.body, content_type=_JSON)
        return web.Response(
            body=encoded.body,
            content_type="application/octet-stream",
            headers={v2_codec.HEADER_LENGTH: str(encoded.header_length)},
        )

    def _record(self, name: str, version: str, code: str, start: float, served: str = "") -> None:
        """One inference request ended: ``version`` asked for ("" for the default),
        ``served`` the one that answered, if one did."""
        self._recorder.inference(name, version, code, time.perf_counter() - start, served)


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def _config(model: Served) -> dict[str, Any]:
    """Triton's model configuration, as its HTTP endpoint writes it (JSON of ModelConfig)."""
    spec = model.spec
    skip = 1 if spec.max_batch_size > 0 else 0  # dims without the batch axis, as Triton

    def entries(specs: Any) -> list[dict[str, Any]]:
        return [_config_tensor(s, skip) for s in specs]

    config: dict[str, Any] = {
        "name": spec.name,
        "platform": spec.platform,
        "backend": "onnxruntime" if isinstance(model, LoadedModel) else spec.platform,
        "max_batch_size": spec.max_batch_size,
        "input": entries(spec.inputs),
        "output": entries(spec.outputs),
        "parameters": {"execution_providers": {"string_value": ",".join(model.providers)}},
    }
    if isinstance(model, LoadedModel) and model.settings.enabled:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": model.settings.max_queue_delay_us
        }
    if spec.labels:
        config["parameters"]["labels"] = {"string_value": ",".join(spec.labels)}
    return config


_CONFIG_TYPE = {"BYTES": "STRING"}


def _config_tensor(spec: TensorSpec, skip: int) -> dict[str, Any]:
    datatype = _CONFIG_TYPE.get(spec.datatype, spec.datatype)
    return {"name": spec.name, "data_type": f"TYPE_{datatype}", "dims": list(spec.shape[skip:])}


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


def _statistics(model: Served) -> dict[str, Any]:
    s = model.stats
    with s.lock:
        return {
            "name": model.name,
            "version": str(model.version),
            "last_inference": s.last_inference_ms,
            "inference_count": s.inference_count,
            "execution_count": s.execution_count,
            "inference_stats": {
                "success": _duration(s.success_count, s.success_ns),
                "fail": _duration(s.fail_count, s.fail_ns),
                "queue": _duration(s.queue_count, s.queue_ns),
                "compute_infer": _duration(s.compute_count, s.compute_ns),
            },
            "batch_stats": [
                {"batch_size": rows, "compute_infer": _duration(runs, s.batch_ns[rows])}
                for rows, runs in sorted(s.batches.items())
            ],
        }


__all__ = ["KServeRoutes"]
