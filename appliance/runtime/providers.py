"""Choosing ONNX Runtime execution providers for this box, once, quietly.

``onnxruntime-gpu`` lists the CUDA and TensorRT providers as available even on a box
without a GPU, and asking for them there prints a screen of loader errors. So a GPU
provider is only probed when an NVIDIA device is present (NVML, or ``/dev/nvidia0``),
and the probe runs with ONNX Runtime's logger silenced. The outcome is one log line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from appliance.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

#: What ``InferenceSession(providers=...)`` takes: a name, or (name, options).
ProviderSpec = str | tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ProviderChoice:
    """The providers every session on this box gets, and why."""

    providers: tuple[ProviderSpec, ...]
    reason: str
    available: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p if isinstance(p, str) else p[0] for p in self.providers)

    @property
    def primary(self) -> str:
        return self.names[0]

    def describe(self) -> str:
        return f"execution providers: {', '.join(self.names)} ({self.reason})"


def choose_providers(
    requested: list[str] | None = None,
    *,
    gpu_fp16: bool = True,
    cache_dir: Path | None = None,
    available: Sequence[str] | None = None,
    gpu_present: bool | None = None,
    probe: Callable[[str], bool] | None = None,
) -> ProviderChoice:
    """Pick providers: the operator's list if given (checked), else the best that works.

    What the box reports is asked of ONNX Runtime and NVML unless given: ``available``
    (the providers this ONNX Runtime build lists), ``gpu_present`` (an NVIDIA device is
    there) and ``probe`` (a one-node session really runs on that provider), so every
    branch can be exercised on a box without a GPU.
    """
    listed = tuple(ort.get_available_providers() if available is None else available)
    if requested:
        return _requested(requested, listed, gpu_fp16, cache_dir)
    if not (_nvidia_gpu_present() if gpu_present is None else gpu_present):
        return ProviderChoice((CPU,), "no NVIDIA GPU found", listed)
    if probe is None:
        _preload_cuda_libraries()
        probe = _probe
    for name in (TENSORRT, CUDA):
        if name in listed and probe(name):
            chain = _gpu_chain(name, gpu_fp16, cache_dir)
            return ProviderChoice(chain, f"GPU found, {name} loads", listed)
    return ProviderChoice(
        (CPU,), "GPU found but the CUDA libraries did not load; serving on CPU", listed
    )


def _requested(
    requested: list[str],
    available: tuple[str, ...],
    gpu_fp16: bool,
    cache_dir: Path | None,
) -> ProviderChoice:
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise ConfigError(
            f"runtime.providers: {', '.join(unknown)} not available in this ONNX Runtime; "
            f"expected some of {', '.join(available)}"
        )
    if requested[0] in (TENSORRT, CUDA):
        chain = _gpu_chain(requested[0], gpu_fp16, cache_dir)
        rest = tuple(p for p in requested[1:] if p not in (TENSORRT, CUDA, CPU))
        return ProviderChoice((*chain[:-1], *rest, CPU), "set in config", available)
    names = tuple(requested) if CPU in requested else (*requested, CPU)
    return ProviderChoice(names, "set in config", available)


def _gpu_chain(first: str, gpu_fp16: bool, cache_dir: Path | None) -> tuple[ProviderSpec, ...]:
    """TensorRT falls back to CUDA for unsupported nodes, CUDA to CPU."""
    cuda: ProviderSpec = (CUDA, {"device_id": 0, "cudnn_conv_algo_search": "HEURISTIC"})
    if first == CUDA:
        return (cuda, CPU)
    trt_options: dict[str, Any] = {"device_id": 0, "trt_fp16_enable": gpu_fp16}
    if cache_dir is not None:
        # Engines take minutes to build; cache them beside the repository.
        trt_options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}
    return ((TENSORRT, trt_options), cuda, CPU)


def _nvidia_gpu_present() -> bool:
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount()) > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return os.path.exists("/dev/nvidia0")


def _preload_cuda_libraries() -> None:
    """Load CUDA/cuDNN from the nvidia-* wheels if installed (onnxruntime-gpu[cuda,cudnn])."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:
            log.debug("preloading CUDA libraries failed: %s", exc)


def _probe(provider: str) -> bool:
    """Does a one-node session really run on ``provider``? ORT falls back silently."""
    from appliance.runtime._probe_model import identity_model_bytes
    from appliance.runtime.factory import open_session

    try:
        session = open_session(
            identity_model_bytes(),
            ModelLoadError,
            providers=(provider, CPU),
            log_severity=4,  # fatal only: no wall of loader errors
        )
    except ModelLoadError as exc:
        log.debug("probe of %s failed: %s", provider, exc)
        return False
    return bool(session.get_providers()[0] == provider)


__all__ = ["CPU", "CUDA", "TENSORRT", "ProviderChoice", "ProviderSpec", "choose_providers"]
