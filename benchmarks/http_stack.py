"""Which HTTP stack for the daemon's REST port: aiohttp, or uvicorn with Starlette.

Runs the same tiny V2-shaped handler (read the JSON body, parse it, answer a JSON
body of the size a V2 infer response of the default model has) on each candidate,
each in its own process on one asyncio event loop, as the daemon would embed it, and
drives it with the closed-loop HTTP generator (``_http_load``) at concurrency 1 and 16.
Writes ``benchmarks/results/http-stack.md``.

    python benchmarks/http_stack.py [--duration SECONDS] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _http_load import http_request, run_http_load  # noqa: E402

REQUEST = {
    "inputs": [
        {
            "name": "input",
            "datatype": "FP32",
            "shape": [1, 30],
            "data": [float(i) for i in range(30)],
        }
    ]
}
RESPONSE = {
    "model_name": "breast_cancer",
    "model_version": "1",
    "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]}
    ],
}

# Each server: a Python program run with the port as its argument.
SERVERS = {
    "aiohttp": """
import asyncio, json, sys
from aiohttp import web
RESPONSE = json.dumps({response}).encode()
async def infer(request):
    json.loads(await request.read())
    return web.Response(body=RESPONSE, content_type="application/json")
async def main():
    app = web.Application()
    app.router.add_post("/v2/models/{{name}}/infer", infer)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    await asyncio.Event().wait()
asyncio.run(main())
""",
    "uvicorn + Starlette": """
import asyncio, json, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
RESPONSE = json.dumps({response}).encode()
async def infer(request):
    json.loads(await request.body())
    return Response(RESPONSE, media_type="application/json")
app = Starlette(routes=[Route("/v2/models/{{name}}/infer", infer, methods=["POST"])])
config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), loop="asyncio",
                        http="httptools", access_log=False, log_config=None, lifespan="off")
asyncio.run(uvicorn.Server(config).serve())
""",
    "uvicorn, bare ASGI": """
import asyncio, json, sys
import uvicorn
RESPONSE = json.dumps({response}).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(RESPONSE)).encode())]
async def app(scope, receive, send):
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    json.loads(body)
    await send({{"type": "http.response.start", "status": 200, "headers": HEADERS}})
    await send({{"type": "http.response.body", "body": RESPONSE}})
config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), loop="asyncio",
                        http="httptools", access_log=False, log_config=None, lifespan="off")
asyncio.run(uvicorn.Server(config).serve())
""",
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(name: str, source: str, duration: float) -> list[tuple[str, int, float, float, int]]:
    port = free_port()
    program = source.format(response=repr(RESPONSE))
    process = subprocess.Popen([sys.executable, "-c", program, str(port)])
    try:
        time.sleep(2.0)
        body = json.dumps(REQUEST).encode()
        request = http_request(
            "POST", "/v2/models/breast_cancer/infer", body, {"Content-Type": "application/json"}
        )
        rows = []
        for concurrency in (1, 16):
            result = run_http_load(f"127.0.0.1:{port}", request, concurrency, duration)
            print(f"  {name:22s} c={concurrency:<3d} {result.throughput:8.0f}/s "
                  f"p50 {result.p50_ms:.3f} ms errors {result.errors}", flush=True)  # fmt: skip
            rows.append((name, concurrency, result.throughput, result.p50_ms, result.errors))
        return rows
    finally:
        process.terminate()
        process.wait(30)


CHOICE = """
Choice: aiohttp. With throughput level between the two framework stacks, what decides
is embedding: aiohttp's `AppRunner` runs in the daemon's own loop without installing
signal handlers (uvicorn's `Server.serve` takes SIGINT and SIGTERM with
`signal.signal`), shuts down gracefully within a timeout, cancels a handler whose
client disconnects, and gives a handler the TLS transport, whose verified client
certificate is the caller's identity under mTLS (uvicorn's ASGI scope does not carry
it). Bare ASGI is faster but would mean writing routing, bodies and streaming by hand.
"""


def report(rows: list[tuple[str, int, float, float, int]], duration: float) -> str:
    import aiohttp
    import starlette
    import uvicorn

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# HTTP stack for the REST port",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by "
        f"`python benchmarks/http_stack.py --duration {duration:g}`.",
        "",
        f"- Machine: {os.cpu_count()} cores, shared with other work (load average at the "
        f"end {load}); Python {platform.python_version()}",
        f"- aiohttp {aiohttp.__version__}; uvicorn {uvicorn.__version__} (httptools parser, "
        f"asyncio loop) with Starlette {starlette.__version__}",
        "- Each server: one process, one asyncio loop, a handler that parses the JSON body "
        "and answers a V2-sized JSON body; closed loop over keep-alive connections "
        f"(`_http_load`), {duration:g} s per point after 1 s of warm-up.",
        "",
        "| stack | concurrency | requests/s | p50 (ms) | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, concurrency, throughput, p50, errors in rows:
        lines.append(f"| {name} | {concurrency} | {throughput:,.0f} | {p50:.3f} | {errors} |")
    lines += ["", CHOICE.strip()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "http-stack.md")
    args = parser.parse_args()
    rows = []
    for name, source in SERVERS.items():
        rows += measure(name, source, args.duration)
    args.out.write_text(report(rows, args.duration))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
