"""Generative benchmark: our daemon's token streaming against in-process onnxruntime-genai
and Hugging Face ``generate``, on a model of a real small architecture.

The model has SmolLM2-135M's shape (a Llama: hidden 576, 30 layers, 9 heads, 3 KV
heads, intermediate 1536, vocabulary 49152) with random weights (speed does not depend
on their values), built to int4 by onnxruntime-genai's builder and cached. Its tokenizer
is the repo's small clinical BPE; the output rows of tokens that print nothing (padding
past the tokenizer, special tokens, partial bytes) are zero, so greedy decoding streams
one visible piece per token and never stops at EOS: every request generates exactly
``--max-tokens`` tokens (checked, and shown as "tokens each").

In one run, at concurrency 1, 4 and 16, closed loop, every answer streamed and timed,
on the same prompts (``--prompt-tokens`` long each, all different):

- in-process ``og.Engine`` (our limit: no server in between);
- our daemon over gRPC ``ModelStreamInfer`` (Triton's vLLM-backend tensors, ``grpc.aio``);
- our daemon over the OpenAI API (``/v1/completions``, ``stream: true``, official client);
- Hugging Face ``transformers`` ``generate`` on the same weights (float32; static batches).

The three engine-backed rows take turns at each concurrency, so a burst of other load
on a shared box lands on all of them. Writes ``benchmarks/results/generative.md`` with
the machine, versions, the table, decode's distance to the box's memory bandwidth and
the issues' targets, met or missed.

    python benchmarks/generative.py [--quick] [--out FILE]
    python benchmarks/generative.py --provider cuda --precision fp16 --paged   # a GPU box
    python benchmarks/generative.py --tiny --quick    # a small shape: checks the steps
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # the daemon runner and model cache shared with the tests

from _gen_load import Outcome, Point, peak_rss_mb, run_child, summarise  # noqa: E402

from compress.lm import GenaiBuild, LlamaSpec  # noqa: E402
from compress.lm.tiny import corpus  # noqa: E402
from tests._daemon import DaemonProcess  # noqa: E402
from tests._lm import genai_model, hf_llama  # noqa: E402

#: SmolLM2-135M's shape. Untied output head (SmolLM2 ties it to the embedding): the int4
#: head is read every step either way, the float32 embedding only one row per token.
SMOLLM2_135M = LlamaSpec(
    hidden=576,
    layers=30,
    heads=9,
    kv_heads=3,
    intermediate=1536,
    model_vocab=49152,
    context=2048,
    steps=0,
    printable_only=True,
)
TINY = LlamaSpec(model_vocab=4096, context=512, steps=0, printable_only=True)
CONCURRENCY = (1, 4, 16)
#: Requests per point: enough for a p50 and a rough p99, short enough for 2 cores.
REQUESTS = {1: 4, 4: 8, 16: 16}
QUICK_REQUESTS = {1: 2, 4: 4, 16: 16}
#: transformers runs one static batch of C at a time: one batch per point (two at c=1).
HF_REQUESTS = QUICK_REQUESTS
MODEL = "smollm"
ENGINE, GRPC, OPENAI, HF = (
    "in-process og.Engine",
    "daemon, gRPC stream",
    "daemon, OpenAI stream",
    "transformers generate",
)


@dataclass
class Setup:
    spec: LlamaSpec
    build: GenaiBuild
    provider: str  # "cpu" | "cuda"
    prompt_tokens: int
    max_tokens: int
    requests: dict[int, int]
    max_batch_size: int
    command: str
    rows: dict[tuple[str, int], Point] = field(default_factory=dict)
    #: Concurrency-1 TTFTs (ms) of the interleaved rounds, per row and round.
    ttft_rounds: dict[str, list[list[float]]] = field(default_factory=dict)
    #: The daemon's own mean TTFT (seconds) over each round's requests, from /metrics.
    server_ttft: list[float] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


# -- inputs ----------------------------------------------------------------------------


def make_prompts(hf_folder: Path, spec: LlamaSpec, count: int, length: int) -> list[str]:
    """``count`` different clinical-style texts of exactly ``length`` tokens each."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_folder)
    _, held_out = corpus(spec)
    ids = tokenizer.encode(" ".join(held_out * 4))
    prompts: list[str] = []
    start = 0
    while len(prompts) < count:
        if start + length > len(ids):
            raise RuntimeError("the held-out corpus is too short for that many prompts")
        text = tokenizer.decode(ids[start : start + length]).strip()
        start += length // 2 + 1  # windows overlap by less than half: no shared prefix
        if len(tokenizer.encode(text)) == length:
            prompts.append(text)
    return prompts


def copy_bandwidth(provider: str, megabytes: int = 256, repeats: int = 5) -> tuple[float, str]:
    """Bytes per second a copy of a large array moves (read plus write), best of
    ``repeats``, and how it was measured: numpy on the CPU (one core), torch on the GPU
    when the model runs there."""
    if provider == "cuda":
        return _gpu_copy_bandwidth(megabytes * 4, repeats)
    source = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    how = f"numpy copy of a {megabytes} MiB array, read plus write, best of {repeats}, one core"
    return 2 * source.nbytes / best, how


def _gpu_copy_bandwidth(megabytes: int, repeats: int) -> tuple[float, str]:
    import torch

    source = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)  # the first copy pays for setting up
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        target.copy_(source)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    nbytes = source.numel() * 4
    how = f"torch copy of a {megabytes} MiB tensor on the GPU, read plus write, best of {repeats}"
    return 2 * nbytes / best, how


def weight_bytes_per_step(folder: Path) -> tuple[int, int]:
    """(bytes every decode step reads, bytes of the tables only gathered from): every
    initializer of ``model.onnx`` is read once per step except the embedding, of which
    a step reads one row per token."""
    import onnx

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    gathered = {n.input[0] for n in model.graph.node if n.op_type.startswith("Gather")}
    read = tables = 0
    for tensor in model.graph.initializer:
        size = _initializer_bytes(tensor)
        if tensor.name in gathered:
            tables += size
        else:
            read += size
    return read, tables


def _initializer_bytes(tensor: Any) -> int:
    import onnx

    for entry in tensor.external_data:
        if entry.key == "length":
            return int(entry.value)
    if tensor.raw_data:
        return len(tensor.raw_data)
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return int(np.prod(tensor.dims)) * itemsize


def repository(work: Path, folder: Path) -> Path:
    """A Triton-style repository holding a copy of the genai folder as ``smollm/1`` (the
    daemon refuses links leading out of a model's folder, hard links too)."""
    shutil.copytree(folder, work / "repository" / MODEL / "1")
    return work / "repository"


# -- measuring -------------------------------------------------------------------------


def _job(
    setup: Setup, prompts: list[str], concurrency: int, requests: int = 0, **extra: Any
) -> dict[str, Any]:
    return {
        "prompts": prompts[: requests or setup.requests[concurrency]],
        "concurrency": concurrency,
        "max_tokens": setup.max_tokens,
        "provider": setup.provider,
        "max_batch_size": setup.max_batch_size,
        "model": MODEL,
        **extra,
    }


def _record(
    setup: Setup, kind: str, concurrency: int, outcome: Outcome, rss_mb: float = 0.0
) -> None:
    point = summarise(outcome.records, concurrency, rss_mb or outcome.rss_mb)
    setup.rows[(kind, concurrency)] = point
    setup.notes.update({f"{kind}, c={concurrency}: {k}": v for k, v in outcome.notes.items()})
    print(
        f"  {kind:24s} c={concurrency:<3d} {point.tokens_per_s:7.1f} tok/s "
        f"TTFT p50 {point.ttft_p50_ms:7.1f} ms p99 {point.ttft_p99_ms:7.1f} ms "
        f"ITL p50 {point.itl_p50_ms:6.1f} ms tokens {point.tokens_each} "
        f"RSS {point.rss_mb:.0f} MB",
        flush=True,
    )


def measure(setup: Setup, genai: Path, hf: Path, work: Path) -> None:
    prompts = make_prompts(hf, setup.spec, max(setup.requests.values()), setup.prompt_tokens)
    config: dict[str, Any] = {
        "repository": {"path": str(repository(work, genai)), "serve_default_model": False}
    }
    (work / "daemon").mkdir()
    with DaemonProcess(work / "daemon", config, ready_timeout=180.0) as daemon:
        assert daemon.process is not None
        warm = _job(setup, prompts, 1) | {"prompts": prompts[:1], "max_tokens": 8}
        run_child("grpc", warm | {"target": daemon.address})  # the daemon's first steps
        for c in CONCURRENCY:
            _record(
                setup, ENGINE, c, run_child("engine", _job(setup, prompts, c, folder=str(genai)))
            )
            for kind, name, target in (
                ("grpc", GRPC, daemon.address),
                ("openai", OPENAI, daemon.http_address),
            ):
                outcome = run_child(kind, _job(setup, prompts, c, target=target))
                _record(setup, name, c, outcome, peak_rss_mb(daemon.process.pid))
        ttft_rounds(setup, prompts, genai, daemon)
    for c in CONCURRENCY:
        job = _job(setup, prompts, c, HF_REQUESTS[c], hf_folder=str(hf))
        _record(setup, HF, c, run_child("hf", job))


#: TTFT at concurrency 1 in rounds, the in-process Engine and the daemon taking turns
#: (order reversed every other round): the 5 ms target is finer than a shared box's
#: drift between two points measured minutes apart.
TTFT_ROUNDS, TTFT_REQUESTS = 4, 5


def _server_ttft(daemon: DaemonProcess) -> tuple[float, float]:
    """(sum in seconds, count) of the daemon's own TTFT histogram: from a request's
    arrival at the engine to its first token, as ``/metrics`` says."""
    import urllib.request

    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("appliance_time_to_first_token_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("appliance_time_to_first_token_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def ttft_rounds(setup: Setup, prompts: list[str], genai: Path, daemon: DaemonProcess) -> None:
    job = _job(setup, prompts, 1, TTFT_REQUESTS) | {"max_tokens": 2}
    kinds = [
        (ENGINE, "engine", job | {"folder": str(genai)}),
        (GRPC, "grpc", job | {"target": daemon.address}),
    ]
    for index in range(TTFT_ROUNDS):
        for name, kind, each in kinds if index % 2 == 0 else kinds[::-1]:
            before = _server_ttft(daemon)
            records = run_child(kind, each).records
            if kind == "grpc":
                after = _server_ttft(daemon)
                setup.server_ttft.append((after[0] - before[0]) / max(after[1] - before[1], 1))
            firsts = [r.arrivals[0] * 1e3 for r in records if r.arrivals]
            setup.ttft_rounds.setdefault(name, []).append(firsts)
        line = "  ".join(
            f"{name} {np.median(rounds[-1]):.1f} ms" for name, rounds in setup.ttft_rounds.items()
        )
        print(f"  TTFT round {index + 1}: {line}", flush=True)


def ttft_gap_ms(setup: Setup) -> float:
    """Daemon TTFT p50 minus the in-process Engine's, over every interleaved round."""
    median = {k: float(np.median(np.concatenate(v))) for k, v in setup.ttft_rounds.items()}
    return median[GRPC] - median[ENGINE]


def ttft_lines(setup: Setup) -> list[str]:
    lines = [
        "## TTFT at concurrency 1, interleaved",
        "",
        f"{TTFT_ROUNDS} rounds of {TTFT_REQUESTS} requests (`max_tokens` 2), the in-process "
        "Engine and the daemon over gRPC taking turns, the order reversed every other "
        "round; the target uses the medians over all rounds.",
        "",
        "| round | " + " | ".join(f"{k} TTFT p50 (ms)" for k in setup.ttft_rounds) + " |",
        "|---|" + "---:|" * len(setup.ttft_rounds),
    ]
    for index in range(TTFT_ROUNDS):
        cells = [f"{np.median(v[index]):.1f}" for v in setup.ttft_rounds.values()]
        lines.append(f"| {index + 1} | " + " | ".join(cells) + " |")
    cells = [f"{np.median(np.concatenate(v)):.1f}" for v in setup.ttft_rounds.values()]
    lines.append("| all | " + " | ".join(cells) + " |")
    if setup.server_ttft:
        means = ", ".join(f"{t * 1e3:.1f}" for t in setup.server_ttft)
        lines += [
            "",
            "The daemon's own TTFT histogram (`appliance_time_to_first_token_seconds`: "
            "from the request's hand-over to the engine thread to its first token), mean "
            f"per round: {means} ms. The rest of the client's TTFT is the way in and out: "
            "gRPC, tokenizing, the hand-over to the engine thread and the piece's way back.",
        ]
    return lines


# -- the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    at_least: bool  # value >= threshold (else: value <= threshold)
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.value >= self.threshold if self.at_least else self.value <= self.threshold


def checks(setup: Setup) -> list[Check]:
    rows = setup.rows

    def tps(kind: str, c: int) -> float:
        return rows[(kind, c)].tokens_per_s

    ttft_gap = ttft_gap_ms(setup)
    return [
        Check(
            "daemon (gRPC) c=16 tokens/s / in-process Engine c=16",
            tps(GRPC, 16) / tps(ENGINE, 16),
            0.85,
            True,
        ),
        Check("daemon (gRPC) c=1 TTFT p50 minus in-process Engine's", ttft_gap, 5.0, False, " ms"),
        Check("daemon (gRPC) tokens/s c=16 / c=1", tps(GRPC, 16) / tps(GRPC, 1), 2.0, True),
        Check(
            "daemon (gRPC) c=1 tokens/s / transformers generate c=1",
            tps(GRPC, 1) / tps(HF, 1),
            3.0,
            True,
        ),
        Check(
            "OpenAI stream c=16 tokens/s / gRPC stream c=16",
            tps(OPENAI, 16) / tps(GRPC, 16),
            0.9,
            True,
        ),
    ]


def bandwidth_lines(setup: Setup, genai: Path, bandwidth: tuple[float, str]) -> list[str]:
    read, tables = weight_bytes_per_step(genai)
    lines = [
        "## Decode against the memory-bandwidth limit",
        "",
        f"Every decode step reads the model's weights once: {read / 2**20:.1f} MiB here "
        f"(int4 blocks and their scales, norms; the {tables / 2**20:.1f} MiB embedding is "
        "gathered one row per token and not counted; the KV cache, a few MiB at these "
        "lengths, is not counted either). A step gives one token to every running "
        "sequence, so the step rate is 1 / the decode step time (per answer, the time "
        "from its first piece to its last over the pieces between; the median answer). "
        f"The box's copy bandwidth ({bandwidth[1]}): {bandwidth[0] / 2**30:.1f} GiB/s.",
        "",
        "| row | concurrency | decode step (ms) | steps/s | weights read per s "
        "| share of copy bandwidth |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    limit = bandwidth[0]
    for kind in (ENGINE, GRPC):
        for c in CONCURRENCY:
            point = setup.rows[(kind, c)]
            if not point.decode_ms:
                continue
            steps = 1e3 / point.decode_ms
            lines.append(
                f"| {kind} | {c} | {point.decode_ms:.1f} | {steps:.1f} "
                f"| {read * steps / 2**30:.2f} GiB/s "
                f"| {read * steps / limit:.2f} |"
            )
    return lines


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _gpu_name() -> str:
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return "no GPU"
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "GPU: " + (done.stdout.strip().replace("\n", "; ") or "nvidia-smi gave nothing")


def _versions() -> str:
    import grpc
    import onnxruntime as ort
    import onnxruntime_genai as og
    import openai
    import torch
    import transformers

    return (
        f"Python {platform.python_version()}, onnxruntime-genai {og.__version__}, onnxruntime "
        f"{ort.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, "
        f"grpcio {grpc.__version__}, openai {openai.__version__}"
    )


def why_missed(setup: Setup, genai: Path, missed: list[Check]) -> list[str]:
    """What the measurements say about each missed target."""
    rows, lines = setup.rows, []
    names = " ".join(c.name for c in missed)
    static = "static" in capacity(setup, genai)
    if "c=16 / c=1" in names and static:
        one, four = rows[(ENGINE, 1)].decode_ms, rows[(ENGINE, 4)].decode_ms
        lines.append(
            "Tokens/s at 16 against 1: this model runs onnxruntime-genai 0.18's static "
            "batches (its only scheduler without a paged KV cache, which the builder "
            "makes for CUDA with fp16/bf16 only). That scheduler starts at most 4 rows "
            "per batch and admits new requests only when every row of the running batch "
            "has finished, so concurrency 16 is four batches of 4 one after the other, "
            "not continuous batching; the daemon does no worse than the in-process Engine "
            f"here. On this box a decode step of 4 rows took {four:.1f} ms against "
            f"{one:.1f} ms for one ({four / max(one, 1e-9):.1f}x: the int4 kernels are "
            "compute-bound on 2 shared cores, not bandwidth-bound, see below), and every "
            "prompt's prefill runs before its batch decodes, so batching buys "
            f"{rows[(ENGINE, 16)].tokens_per_s / rows[(ENGINE, 1)].tokens_per_s:.2f}x in "
            "process too. The 2x needs the paged engine (CUDA) or a CPU engine that "
            "schedules rows continuously."
        )
    if "TTFT" in names:
        lines.append(
            "TTFT at concurrency 1: the daemon's first token also pays for the way in "
            "and out of the server (gRPC, tokenizing in the event loop, the hand-over to "
            "the engine thread and the piece's way back, each a wake-up of a thread on a "
            "box whose cores are taken by other work); the interleaved rounds below give "
            "the gap round by round and the daemon's own TTFT histogram beside it."
        )
    if "in-process Engine c=16" in names:
        lines.append(
            "Daemon against the in-process Engine at 16: the engine thread shares the "
            "2 cores with the event loop, the gRPC threads and the client process."
        )
    if "OpenAI" in names:
        lines.append(
            "OpenAI against gRPC streaming at 16: each piece is a server-sent event "
            "(JSON built per chunk in the daemon, parsed by the `openai` client's "
            "pydantic models in a process sharing the 2 cores)."
        )
    if "transformers" in names:
        lines.append(
            "Daemon against transformers at concurrency 1: see the decode step times; "
            "transformers runs float32 weights, the daemon int4."
        )
    return lines


def capacity(setup: Setup, genai: Path) -> str:
    written = json.loads((genai / "genai_config.json").read_text())
    if setup.provider == "cuda" and "dynamic_batching" in written.get("engine", {}):
        return f"dynamic batching of up to {setup.max_batch_size} rows in a paged KV cache"
    # onnxruntime-genai 0.18's static scheduler starts at most 4 rows per batch.
    return f"static batches of up to {min(setup.max_batch_size, 4)} rows"


def report(setup: Setup, genai: Path, bandwidth: tuple[float, str], seconds: float) -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    spec = setup.spec
    lines = [
        "# Generative benchmark",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `{setup.command}` "
        f"({seconds / 60:.1f} minutes, model build cached).",
        "",
        f"- Machine: {os.cpu_count()} cores ({_cpu_name()}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {_gpu_name()}; provider "
        f"{setup.provider}. Load average at the end {load}"
        + (
            " (**the box was shared with other work**: a quieter box gives higher figures)"
            if os.getloadavg()[0] > (os.cpu_count() or 1) + 0.5
            else ""
        )
        + ". The rows were measured in turns at each concurrency, so their ratios are "
        "what to read.",
        f"- {_versions()}",
        f"- Model: a Llama of hidden {spec.hidden}, {spec.layers} layers, {spec.heads} heads, "
        f"{spec.kv_heads} KV heads, intermediate {spec.intermediate}, vocabulary "
        f"{spec.model_vocab}, random weights, built by onnxruntime-genai's builder "
        f"({setup.build.precision}, {setup.build.provider}"
        + "".join(f", {k}={v}" for k, v in setup.build.extra.items())
        + f"); `transformers` runs the same weights from the Hugging Face folder "
        f"({'float16' if setup.provider == 'cuda' else 'float32'}).",
        f"- Load: closed loop, {setup.prompt_tokens}-token prompts (all different), greedy, "
        f"`max_tokens` {setup.max_tokens}; requests per point "
        + ", ".join(f"{n} at c={c}" for c, n in setup.requests.items())
        + f" ({', '.join(f'{n} at c={c}' for c, n in HF_REQUESTS.items())} for transformers)"
        + ". Every request generates exactly `max_tokens` tokens: the output rows of "
        "unprintable, special and padding tokens are zero, so greedy never picks EOS "
        "(`LlamaSpec(printable_only=True)`); transformers also gets `min_new_tokens`. "
        f"Engine capacity: {capacity(setup, genai)}, the daemon's default, and the same "
        "overlay for the in-process Engine.",
        "- Clients: gRPC over `grpc.aio` with the V2 protos, one `ModelStreamInfer` stream "
        "per worker, each answer ended by its empty final response "
        "(`triton_enable_empty_final_response`), not `tritonclient` (its reader thread per "
        "stream would load the 2 cores beside the daemon); OpenAI through the official "
        "`openai` client (`AsyncOpenAI`, `completions.create(stream=True)`); each client in "
        "a process of its own. TTFT: from sending to the first piece; ITL: between pieces. "
        "RSS: peak resident memory of the process that generates (the daemon's "
        "cumulative peak for its rows).",
        "",
        "| row | concurrency | tokens/s | TTFT p50 (ms) | TTFT p99 (ms) | ITL p50 (ms) "
        "| decode step (ms) | tokens each | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for kind in (ENGINE, GRPC, OPENAI, HF):
        for c in CONCURRENCY:
            p = setup.rows[(kind, c)]
            lo, hi = p.tokens_each
            lines.append(
                f"| {kind} | {c} | {p.tokens_per_s:.1f} | {p.ttft_p50_ms:.1f} "
                f"| {p.ttft_p99_ms:.1f} | {p.itl_p50_ms:.1f} | {p.decode_ms:.1f} "
                f"| {lo if lo == hi else f'{lo}-{hi}'} "
                f"| {p.rss_mb:.0f} |"
            )
    threads = sorted({v for k, v in setup.notes.items() if k.endswith("torch_threads")})
    if threads:
        lines += [
            "",
            "transformers ran with torch's intra-op threads at "
            + " and ".join(map(str, threads))
            + " (per point, the faster of all cores and one in its warm-up: on a loaded "
            "box torch's spinning threads can make all cores far slower than one).",
        ]
    lines += ["", "## Targets (issues 12 and 13)", ""]
    lines += ["| target | measured | threshold | met |", "|---|---:|---:|---|"]
    for check in checks(setup):
        bound = "at least" if check.at_least else "at most"
        verdict = "yes" if check.met else "**no**"
        lines.append(
            f"| {check.name} | {check.value:.2f}{check.unit} | {bound} {check.threshold:g}"
            f"{check.unit} | {verdict} |"
        )
    missed = [c for c in checks(setup) if not c.met]
    if missed:
        lines += ["", "## Where a target is missed, and why", ""]
        lines += [
            f"- {c.name}: {c.value:.2f}{c.unit} against {c.threshold:g}{c.unit}." for c in missed
        ]
        lines += ["", *why_missed(setup, genai, missed)]
    lines += ["", *ttft_lines(setup)]
    lines += ["", *bandwidth_lines(setup, genai, bandwidth), ""]
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, 16 tokens each")
    parser.add_argument("--tiny", action="store_true", help="a small model shape (a dry run)")
    parser.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("int4", "fp16"), default="int4")
    parser.add_argument(
        "--paged", action="store_true", help="build for paged attention (CUDA fp16)"
    )
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, help="default 64 (--quick: 16)")
    parser.add_argument("--max-batch-size", type=int, help="default 4 on CPU, 16 on CUDA")
    parser.add_argument("--out", type=Path, help="results file (default: results/generative.md)")
    parser.add_argument(
        "--build-only", action="store_true", help="build (or find) the model, print its folder"
    )
    args = parser.parse_args()
    extra = {"use_paged_attention": "true"} if args.paged else {}
    setup = Setup(
        spec=TINY if args.tiny else SMOLLM2_135M,
        build=GenaiBuild(args.precision, args.provider, extra),
        provider=args.provider,
        prompt_tokens=args.prompt_tokens,
        max_tokens=args.max_tokens or (16 if args.quick else 64),
        requests=QUICK_REQUESTS if args.quick else REQUESTS,
        max_batch_size=args.max_batch_size or (16 if args.provider == "cuda" else 4),
        command="python benchmarks/generative.py " + " ".join(sys.argv[1:]),
    )
    out = args.out or HERE / "results" / "generative.md"
    started = time.perf_counter()
    print("building (or finding cached) the model", flush=True)
    hf, genai = hf_llama(setup.spec), genai_model(setup.spec, setup.build)
    if args.build_only:
        print(f"built {genai}")
        return
    bandwidth = copy_bandwidth(setup.provider)
    print(f"copy bandwidth {bandwidth[0] / 2**30:.1f} GiB/s ({bandwidth[1]})", flush=True)
    work = Path(tempfile.mkdtemp(prefix="generative-bench-"))
    measure(setup, genai, hf, work)
    out.write_text(report(setup, genai, bandwidth, time.perf_counter() - started))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
