"""A lean closed-loop HTTP/1.1 load generator for the live benchmark: N keep-alive connections, each sending the
same pre-built POST and waiting for its answer before the next. Lean because the client shares the machine's
two cores with the server under test: an httpx client costs more CPU per request than the service does."""

import asyncio
import time

import numpy as np


def post_request(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()] + [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


def _fields(head: bytes):
    return (line.partition(b":") for line in head.split(b"\r\n")[1:] if b":" in line)


async def _connection(port: int, request: bytes, until: float, limit: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until and len(latencies) < limit:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(v) for k, _, v in _fields(head) if k.lower() == b"content-length")
            answer = await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {answer[:200]!r}")
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _run(port: int, request: bytes, connections: int, seconds: float, limit: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(_connection(port, request, until, limit, latencies) for _ in range(connections)))
    return latencies, time.perf_counter() - start


def closed_loop(port: int, request: bytes, connections: int, seconds: float, limit: int = 10**9) -> dict:
    """Requests/s and latency percentiles (ms) of `connections` clients for `seconds` (or `limit` requests)."""
    asyncio.run(_run(port, request, connections, 1.0, 200))  # warm-up: connections, caches, lazy imports
    latencies, wall = asyncio.run(_run(port, request, connections, seconds, limit))
    ms = np.array(latencies) * 1000
    return {
        "requests": len(ms),
        "requests_per_s": len(ms) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }
