"""The in-process rows of the generative benchmark, each run in its own process.

- ``engine``: onnxruntime-genai's ``Engine`` driven from one thread with no server in
  between: C closed-loop workers whose next request begins as soon as their last turn
  finishes (between two engine steps), prompts encoded and pieces decoded with the
  model's own tokenizer, as the daemon does. The same capacity overlay as the daemon's
  (static batches of ``max_batch_size`` rows; dynamic batching on a paged CUDA model),
  so this is the limit of what the daemon can reach.
- ``hf``: Hugging Face ``transformers`` ``generate`` on the same weights (the HF folder,
  float32): what a team without this appliance would run. ``generate`` batches
  statically, so concurrency C is one batch of C prompts at a time (all prompts have the
  same length: no padding is added), with ``min_new_tokens`` equal to ``max_new_tokens``.

The job and the answer are ``_gen_load``'s (JSON on stdin and stdout).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gen_load import Record, child_main, worker_prompts


@dataclass
class _Turn:
    worker: int
    request: Any  # og.Request
    stream: Any  # og.TokenizerStream
    sent: float
    arrivals: list[float] = field(default_factory=list)
    tokens: int = 0


def _engine_model(job: dict[str, Any]) -> Any:
    import onnxruntime_genai as og

    folder = Path(job["folder"])
    config = og.Config(str(folder))
    config.clear_providers()
    if job["provider"] != "cpu":
        config.append_provider(job["provider"])
    written = json.loads((folder / "genai_config.json").read_text())
    paged = job["provider"] == "cuda" and "dynamic_batching" in written.get("engine", {})
    mode = "dynamic_batching" if paged else "static_batching"
    config.overlay(json.dumps({"engine": {mode: {"max_batch_size": job["max_batch_size"]}}}))
    return og.Model(config)


class _EngineLoop:
    """The closed loop on one ``og.Engine``, every call from this thread."""

    def __init__(self, job: dict[str, Any]):
        import onnxruntime_genai as og

        self.og = og
        self.job = job
        self.model = _engine_model(job)
        self.tokenizer = og.Tokenizer(self.model)
        self.engine = og.Engine(self.model)
        self.buffer = self.engine.create_event_buffer(256)
        self.active: dict[int, _Turn] = {}  # id(og.Request) -> turn
        self.records: list[Record] = []

    def begin(self, worker: int, prompt: str, max_tokens: int) -> None:
        og = self.og
        ids = np.asarray(self.tokenizer.encode(prompt), dtype=np.int32)
        request = self.engine.create_request()
        options = og.TurnOptions(request)
        options.set_max_generated_tokens(max_tokens)
        options.set_do_sample(False)
        sent = time.perf_counter()
        request.begin_turn(ids, options)
        self.active[id(request)] = _Turn(worker, request, self.tokenizer.create_stream(), sent)

    def run(self, queues: list[deque[str]], max_tokens: int) -> list[Record]:
        token = self.og.EngineEventFlags.TOKEN.value
        finished = self.og.EngineEventFlags.TURN_FINISHED.value
        for worker, prompts in enumerate(queues):
            if prompts:
                self.begin(worker, prompts.popleft(), max_tokens)
        while self.active:
            for event in self.engine.run(self.buffer):
                turn = self.active.get(id(event.request))
                if turn is None:
                    continue
                flags = event.flags.value
                if flags & token:
                    turn.tokens += 1
                    if turn.stream.decode(event.token):
                        turn.arrivals.append(time.perf_counter() - turn.sent)
                if flags & finished:
                    self.end(turn, queues, max_tokens)
        return self.records

    def end(self, turn: _Turn, queues: list[deque[str]], max_tokens: int) -> None:
        del self.active[id(turn.request)]
        turn.request.close()
        self.records.append(Record(turn.sent, turn.arrivals, turn.tokens))
        if queues[turn.worker]:
            self.begin(turn.worker, queues[turn.worker].popleft(), max_tokens)


def _engine(job: dict[str, Any], notes: dict[str, Any]) -> list[Record]:
    loop = _EngineLoop(job)
    # Warm-up at this point's width, as the daemon is warm from the points before: the
    # first steps of a batch shape grow ONNX Runtime's memory arena.
    width = min(job["concurrency"], job["max_batch_size"])
    loop.run([deque([p]) for p in job["prompts"][:width]], 8)
    loop.records.clear()
    return loop.run([deque(p) for p in worker_prompts(job)], job["max_tokens"])


class _Timing:
    """A ``generate`` streamer that only notes when each step's tokens arrive."""

    def __init__(self) -> None:
        self.prompt_seen = False
        self.arrivals: list[float] = []
        self.sent = time.perf_counter()

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        self.arrivals.append(time.perf_counter() - self.sent)

    def end(self) -> None:
        return None


def _fastest_threads(warm_up: Any) -> int:
    """torch's intra-op threads for this run: all cores (its default) or one, whichever
    runs the warm-up faster. On an oversubscribed box torch's spinning threads can make
    all cores tens of times slower than one; transformers gets its better setting."""
    import torch

    timings = {}
    for threads in sorted({os.cpu_count() or 1, 1}, reverse=True):
        torch.set_num_threads(threads)
        warm_up()  # the first call at a thread count pays for its pools
        start = time.perf_counter()
        warm_up()
        timings[threads] = time.perf_counter() - start
    best = min(timings, key=lambda t: timings[t])
    torch.set_num_threads(best)
    return best


def _hf(job: dict[str, Any], notes: dict[str, Any]) -> list[Record]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if job["provider"] == "cuda" else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(job["hf_folder"])
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(job["hf_folder"], dtype=dtype).to(device).eval()
    max_tokens, c = job["max_tokens"], job["concurrency"]
    prompts: list[str] = job["prompts"]

    def generate(batch: list[str], tokens: int) -> list[Record]:
        encoded = tokenizer(batch, return_tensors="pt").to(device)  # equal lengths: no padding
        timing = _Timing()
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                streamer=timing,
                pad_token_id=tokenizer.pad_token_id,
            )
        tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1] :])
        generated = out.shape[1] - encoded["input_ids"].shape[1]
        return [Record(timing.sent, timing.arrivals, generated) for _ in batch]

    notes["torch_threads"] = _fastest_threads(lambda: generate(prompts[:1], 4))
    records: list[Record] = []
    for start in range(0, len(prompts) - c + 1, c):
        records += generate(prompts[start : start + c], max_tokens)
    return records


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    child_main({"engine": _engine, "hf": _hf})
