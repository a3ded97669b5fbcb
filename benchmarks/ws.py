"""WebSocket fan-out: delivery latency and server CPU with N clients on one API process.

The script starts one API process (`sentiment-platform serve`) in
Redis mode on a throw-away SQLite file, connects N clients from a few client processes,
and publishes `post.analyzed` events on the events channel at a fixed rate, each stamped
with its send time, exactly as a worker announces a stored post. It reports the latency
from publish to receipt (p50/p99, over a sample of clients that decode every message; the
other clients read and frame-parse everything but skip the JSON), how many clients the
server dropped as too slow (their connection reset: the hub aborts them) or refused (close
1013: the server is started with `MAX_WS_CLIENTS` at the client count, so none should be),
and the server's CPU.

    .venv/bin/python benchmarks/ws.py --clients 100,1000,2000 [--rate 200] [--seconds 15]
        [--mode post|batch|both]

`post` mode is the contract's default (one `post` message per analysed post);
`batch` connects with `/ws?batch=1` (one `posts` message per hub flush).
Needs Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

REPO = Path(__file__).resolve().parents[1]
CLIENT_PROCESSES = 2
SAMPLED_CLIENTS = 100  # clients that decode every message for latency
CONNECT_CONCURRENCY = 100


# --- clients: a lean WebSocket reader (the `websockets` client costs too much per frame) ---


class Reader(asyncio.Protocol):
    """Handshakes, answers pings, parses frames; decodes JSON only when `measure` is set."""

    def __init__(self, host: str, path: str, measure: bool, result: ClientResult) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n"
        ).encode()
        self.measure = measure
        self.result = result
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:  # a reset: the hub aborted a client it found too slow
            self.result.resets += 1
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            del self.buffer[: end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode()))
                return
            self.upgraded.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        offset = 0
        now = time.time()
        while len(buffer) - offset >= 2:
            opcode = buffer[offset] & 0x0F
            length = buffer[offset + 1] & 0x7F
            header = 2
            if length == 126:
                if len(buffer) - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset + 2)
                header = 4
            elif length == 127:
                if len(buffer) - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset + 2)
                header = 10
            if len(buffer) - offset < header + length:
                break
            start = offset + header
            offset = start + length
            if opcode == 0x1:
                self.result.frames += 1
                if self.measure:
                    self._measure(orjson.loads(buffer[start:offset]), now)
            elif opcode == 0x9:  # ping: answer with a masked pong
                payload = bytes(buffer[start:offset])
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            elif opcode == 0x8:
                code = struct.unpack_from("!H", buffer, start)[0] if length >= 2 else 1005
                self.result.closes.append(code)
        del buffer[:offset]

    def _measure(self, message: dict[str, Any], now: float) -> None:
        if message["type"] == "post":
            items = [message["data"]]
        elif message["type"] == "posts":
            items = message["data"]
        else:
            return
        self.result.latencies.extend(now - i["sent_at"] for i in items if not i["warm_up"])


@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)
    frames: int = 0
    closes: list[int] = field(default_factory=list)
    resets: int = 0
    failed: int = 0


def run_clients(
    port: int, path: str, count: int, sampled: int, ready: Any, go: Any, stop: Any, out: Any
) -> None:
    """One client process: `count` connections, `sampled` of them measuring."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        results = [ClientResult() for _ in range(count)]
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        transports = []

        async def open_one(i: int) -> None:
            async with gate:
                try:
                    transport, reader = await loop.create_connection(
                        lambda: Reader(f"127.0.0.1:{port}", path, i < sampled, results[i]),
                        "127.0.0.1",
                        port,
                    )
                    await asyncio.wait_for(reader.upgraded, 30)
                    transports.append(transport)
                except (OSError, TimeoutError):
                    results[i].failed = 1

        await asyncio.gather(*(open_one(i) for i in range(count)))
        ready.set()
        await loop.run_in_executor(None, go.wait)
        for result in results:  # count only what arrives in the measured interval
            result.latencies.clear()
            result.frames = 0
        cpu_started = time.process_time()
        await loop.run_in_executor(None, stop.wait)
        cpu = time.process_time() - cpu_started
        for transport in transports:
            transport.abort()
        out.put(
            {
                "cpu_s": cpu,
                "sampled": sum(1 for r in results[:sampled] if not r.failed),
                "latencies": [x for r in results for x in r.latencies],
                "frames": sum(r.frames for r in results),
                "closes": [c for r in results for c in r.closes],
                "resets": sum(r.resets for r in results),
                "failed": sum(r.failed for r in results),
            }
        )

    asyncio.run(main())


# --- the server ------------------------------------------------------------------------


def start_server(
    port: int, database: Path, channel: str, flush_ms: int, clients: int, log: Path
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "REDIS_HOST": "127.0.0.1",
        "EVENTS_CHANNEL": channel,
        "REDIS_STREAM_NAME": f"bench_stream_{channel}",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_MINUTE": "0",
        "WS_FLUSH_MS": str(flush_ms),
        "MAX_WS_CLIENTS": str(max(clients, 1)),
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("sentiment-platform")), "serve",
            "--host", "127.0.0.1", "--port", str(port),
        ],
        env=env,
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            raise SystemExit("the API process exited")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return server
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the API process did not start") from None
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from psutil when installed, else /proc."""
    try:
        import psutil  # type: ignore[import-untyped]

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except ImportError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def publish(channel: str, rate: int, seconds: float, warm_up: bool = False) -> int:
    """`post.analyzed` events at `rate` per second (10 ms ticks), each stamped at send."""
    from sentiment_platform.bus import Event
    from sentiment_platform.bus.redis import redis_client
    from sentiment_platform.bus.redis_events import RedisEvents
    from sentiment_platform.config import Settings

    client = redis_client(Settings(redis_host="127.0.0.1"))
    events = RedisEvents(client, channel)
    tick = 0.01
    sent = 0
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1
            batch = [
                Event("post.analyzed", _post(sent + i, time.time(), warm_up))
                for i in range(due - sent)
            ]
            if batch:
                await events.publish_many(batch)
                sent += len(batch)
            await asyncio.sleep(tick)
    finally:
        await client.aclose()
    return sent


def _post(n: int, sent_at: float, warm_up: bool) -> dict[str, Any]:
    return {
        "post_id": f"bench-{n}",
        "source": "bench",
        "content": "Benchmark post with a realistic length, about as long as a tweet is. " * 2,
        "author": "bench",
        "created_at": "2026-01-01T00:00:00Z",
        "sentiment": "positive",
        "confidence": 0.91,
        "emotion": "joy",
        "emotion_confidence": 0.77,
        "model": "bench",
        "analyzed_at": "2026-01-01T00:00:00Z",
        "sent_at": sent_at,
        "warm_up": warm_up,  # not counted
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(
    clients: int, rate: int, seconds: float, mode: str, flush_ms: int, nice: int
) -> dict[str, Any]:
    channel = f"bench_{uuid.uuid4().hex[:8]}"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    path = "/ws?batch=1" if mode == "batch" else "/ws"
    context = multiprocessing.get_context("spawn")
    go, stop, out = context.Event(), context.Event(), context.Queue()
    readies = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        server = start_server(port, Path(tmp) / "bench.db", channel, flush_ms, clients, log)
        if nice:
            os.setpriority(os.PRIO_PROCESS, server.pid, nice)
        try:
            processes = []
            for i in range(CLIENT_PROCESSES):
                share = clients // CLIENT_PROCESSES + (i < clients % CLIENT_PROCESSES)
                sampled = min(share, SAMPLED_CLIENTS // CLIENT_PROCESSES)
                ready = context.Event()
                readies.append(ready)
                process = context.Process(
                    target=run_clients, args=(port, path, share, sampled, ready, go, stop, out)
                )
                process.start()
                processes.append(process)
            for ready in readies:
                if not ready.wait(120):
                    raise SystemExit("clients did not connect in time")
            asyncio.run(publish(channel, rate, 2.0, warm_up=True))
            go.set()
            time.sleep(0.2)
            cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
            sent = asyncio.run(publish(channel, rate, seconds))
            cpu = (cpu_seconds(server.pid) - cpu_before) / (time.monotonic() - wall_before)
            time.sleep(1.0)  # stragglers
            client_wall = time.monotonic() - wall_before + 0.2
            stop.set()
            parts = [out.get(timeout=60) for _ in processes]
            for process in processes:
                process.join(10)
        finally:
            server.terminate()
            server.wait(10)
            skipped = sum(map(int, re.findall(r"skipped_posts=(\d+)", log.read_text())))
    latencies = [x for part in parts for x in part["latencies"]]
    closes = [c for part in parts for c in part["closes"]]
    sampled = sum(part["sampled"] for part in parts)
    return {
        "mode": mode,
        "flush_ms": flush_ms,
        "server_nice": nice,
        "clients": clients,
        "rate": rate,
        "seconds": seconds,
        "sent": sent,
        "connect_failed": sum(part["failed"] for part in parts),
        "dropped": sum(part["resets"] for part in parts),
        "refused_1013": closes.count(1013),
        "skipped_posts": skipped,  # per-post clients, while the hub was behind
        "frames_per_s": round(sum(part["frames"] for part in parts) / (seconds + 1.2)),
        "delivered_share": round(len(latencies) / max(1, sent * sampled), 3),
        "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "max_ms": round(1000 * max(latencies, default=float("nan")), 1),
        "server_cpu": round(cpu, 2),
        "clients_cpu": round(sum(part["cpu_s"] for part in parts) / client_wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="100,1000,2000", help="comma-separated counts")
    parser.add_argument("--rate", type=int, default=200, help="posts per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured interval")
    parser.add_argument("--mode", choices=("post", "batch", "both"), default="both")
    parser.add_argument("--flush-ms", type=int, default=50, help="the server's WS_FLUSH_MS")
    parser.add_argument(
        "--server-nice", type=int, default=0, help="e.g. -10: the server ahead of other jobs"
    )
    args = parser.parse_args()
    modes = ("post", "batch") if args.mode == "both" else (args.mode,)
    print(f"cpus={os.cpu_count()} load_avg={os.getloadavg()[0]:.2f}", flush=True)
    for mode in modes:
        for clients in (int(n) for n in args.clients.split(",")):
            result = run(clients, args.rate, args.seconds, mode, args.flush_ms, args.server_nice)
            print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
