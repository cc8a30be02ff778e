"""Provider choice in process, with what the box reports injected: the GPU branches run
here too, on a box without a GPU. The last test asks this box's ONNX Runtime for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.runtime.providers import CPU, CUDA, TENSORRT, choose_providers

#: What onnxruntime-gpu lists, GPU or not (it has every provider compiled in).
GPU_BUILD = (TENSORRT, CUDA, CPU)
CUDA_OPTIONS = {"device_id": 0, "cudnn_conv_algo_search": "HEURISTIC"}


class Probe:
    """Answers whether a provider loads, and remembers what it was asked."""

    def __init__(self, *loading: str):
        self.loading = set(loading)
        self.asked: list[str] = []

    def __call__(self, provider: str) -> bool:
        self.asked.append(provider)
        return provider in self.loading


def test_without_a_gpu_nothing_is_probed_and_the_cpu_serves() -> None:
    probe = Probe(TENSORRT, CUDA)
    choice = choose_providers(available=GPU_BUILD, gpu_present=False, probe=probe)
    assert choice.providers == (CPU,)
    assert choice.reason == "no NVIDIA GPU found"
    assert choice.available == GPU_BUILD
    assert probe.asked == []  # asking for CUDA here prints a screen of loader errors


def test_a_gpu_where_tensorrt_loads_gets_tensorrt_then_cuda_then_cpu(tmp_path: Path) -> None:
    probe = Probe(TENSORRT, CUDA)
    choice = choose_providers(
        available=GPU_BUILD, gpu_present=True, probe=probe, cache_dir=tmp_path
    )
    trt_options = {
        "device_id": 0,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path),
    }
    assert choice.providers == ((TENSORRT, trt_options), (CUDA, CUDA_OPTIONS), CPU)
    assert choice.names == (TENSORRT, CUDA, CPU)
    assert choice.primary == TENSORRT
    assert choice.reason == f"GPU found, {TENSORRT} loads"
    assert probe.asked == [TENSORRT]
    assert choice.describe() == (
        f"execution providers: {TENSORRT}, {CUDA}, {CPU} (GPU found, {TENSORRT} loads)"
    )


def test_fp16_off_and_no_cache_folder_leave_tensorrt_plain() -> None:
    choice = choose_providers(
        available=GPU_BUILD, gpu_present=True, probe=Probe(TENSORRT), gpu_fp16=False
    )
    assert choice.providers[0] == (TENSORRT, {"device_id": 0, "trt_fp16_enable": False})


def test_a_gpu_where_only_cuda_loads_gets_cuda_then_cpu() -> None:
    probe = Probe(CUDA)
    choice = choose_providers(available=GPU_BUILD, gpu_present=True, probe=probe)
    assert choice.providers == ((CUDA, CUDA_OPTIONS), CPU)
    assert choice.reason == f"GPU found, {CUDA} loads"
    assert probe.asked == [TENSORRT, CUDA]


def test_a_gpu_whose_libraries_do_not_load_falls_back_to_the_cpu() -> None:
    probe = Probe()
    choice = choose_providers(available=GPU_BUILD, gpu_present=True, probe=probe)
    assert choice.providers == (CPU,)
    assert choice.reason == "GPU found but the CUDA libraries did not load; serving on CPU"
    assert probe.asked == [TENSORRT, CUDA]


def test_a_cpu_build_of_onnx_runtime_never_probes_a_gpu_provider() -> None:
    probe = Probe(TENSORRT, CUDA)
    choice = choose_providers(available=(CPU,), gpu_present=True, probe=probe)
    assert choice.providers == (CPU,)
    assert probe.asked == []


def test_an_operators_tensorrt_gets_the_gpu_chain_and_keeps_other_providers() -> None:
    available = (TENSORRT, CUDA, "DnnlExecutionProvider", CPU)
    choice = choose_providers(
        [TENSORRT, "DnnlExecutionProvider"], available=available, gpu_present=False
    )
    assert choice.names == (TENSORRT, CUDA, "DnnlExecutionProvider", CPU)
    assert choice.reason == "set in config"


def test_an_operators_cuda_gets_its_options_and_the_cpu_behind_it() -> None:
    choice = choose_providers([CUDA], available=GPU_BUILD, probe=Probe())
    assert choice.providers == ((CUDA, CUDA_OPTIONS), CPU)


def test_an_operators_cpu_only_list_is_kept_as_it_is() -> None:
    assert choose_providers([CPU], available=GPU_BUILD).providers == (CPU,)
    dnnl = choose_providers(["DnnlExecutionProvider"], available=("DnnlExecutionProvider", CPU))
    assert dnnl.providers == ("DnnlExecutionProvider", CPU)


def test_an_operators_provider_this_build_lacks_is_a_config_error_naming_both() -> None:
    with pytest.raises(ConfigError) as caught:
        choose_providers([CUDA, "OpenVINOExecutionProvider"], available=(CPU,))
    message = str(caught.value)
    assert message.startswith(f"runtime.providers: {CUDA}, OpenVINOExecutionProvider not available")
    assert f"expected some of {CPU}" in message


def test_on_this_box_the_choice_is_what_onnx_runtime_and_the_device_say() -> None:
    import onnxruntime as ort

    from appliance.runtime.providers import _nvidia_gpu_present

    choice = choose_providers()
    assert choice.available == tuple(ort.get_available_providers())
    assert choice.names[-1] == CPU
    if _nvidia_gpu_present():
        assert choice.reason.startswith("GPU found"), choice.describe()
        return
    assert choice.providers == (CPU,)
    assert choice.reason == "no NVIDIA GPU found"
    # Told a GPU is there, the real probe finds that CUDA does not load, and the CPU serves.
    told = choose_providers(gpu_present=True)
    assert told.providers == (CPU,)
    assert told.reason == "GPU found but the CUDA libraries did not load; serving on CPU"
