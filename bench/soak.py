#!/usr/bin/env python
"""Soak test: `gplinker serve` on 127.0.0.1 under mixed traffic for a bounded time.

    python bench/soak.py [--model DIR] [--seconds 60] [--clients 12]

Clients (asyncio streams, each request with a timeout) send, at random:
- valid requests (1-4 texts) whose records must equal offline prediction of the same texts;
- malformed ones (bad JSON, wrong types, unknown models, lone surrogates) that must get a 4xx
  (or, for a surrogate among "texts", a 200 with that record's error and the others answered);
- large requests whose client disconnects right after sending: their texts must be dropped, not run;
- chunked bodies (no Content-Length) far over the size limit: 413 before the body is read whole;
- slow senders that trickle a valid body over about two seconds.
The server's RSS (/proc) and queue depth (/health) are sampled twice a second. Reports 5xx, wrong
answers, lost answers (timeouts, dropped connections on valid requests), peak RSS and queue depth,
and the jobs of gone clients dropped vs run, to docs/reliability.md (between markers) and
docs/soak.json. Target: 0 5xx, 0 wrong or lost answers, RSS bounded, every job whose client had
gone before its batch started dropped.

Without --model it trains the quick start's English NER model (minilm-l6) once into
runs/bench_serve (as bench/serve.py does). Every loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve import Server, ensure_model, offline, same_record, texts_for_bench  # noqa: E402

BAD = [
    b"{not json",
    b'{"text": 5}',
    b'{"texts": []}',
    b'{"text": "a", "models": ["nope"]}',
    b"[1, 2]",
    b'{"text": "a", "threshold": "0.9"}',
    b'{"text": "a", "threshold": NaN}',
    b'{"text": "bad \\ud800"}',
]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=5) as r:
        return json.loads(r.read())


async def exchange(
    port: int, head: bytes, body_parts: list[bytes], timeout: float, delay: float = 0.0, read: bool = True
) -> tuple[int, bytes, int]:
    """One request on a fresh connection: (status, body, bytes of the body sent before the answer
    came); status 0 when the connection ended without an answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write(head)
        answer = asyncio.ensure_future(reader.readline())
        for part in body_parts:
            if answer.done():
                break
            writer.write(part)
            sent += len(part)
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(delay)  # also lets the reader take an early answer before a reset discards it
        if not read:
            answer.cancel()
            return -1, b"", sent
        try:
            line = await asyncio.wait_for(answer, timeout)
        except ConnectionError:
            return 0, b"", sent
        if not line:
            return 0, b"", sent
        status = int(line.split()[1])
        length = None
        while True:
            h = (await asyncio.wait_for(reader.readline(), timeout)).decode("latin-1").strip()
            if not h:
                break
            name, _, value = h.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await asyncio.wait_for(reader.readexactly(length) if length is not None else reader.read(), timeout)
        return status, data, sent
    finally:
        writer.close()


def post_head(length: int | None) -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return f"POST /extract HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{size}\r\n".encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def soak(
    server: Server, texts: list[str], want: dict[str, dict], seconds: float, clients: int, limit: int, seed: int
) -> dict:
    rng = random.Random(seed)
    port = server.port
    stats = {
        k: 0
        for k in (
            "valid",
            "valid_ok",
            "wrong",
            "lost",
            "malformed",
            "malformed_4xx",
            "surrogate_batches",
            "disconnected",
            "disconnected_texts",
            "chunked_oversize",
            "chunked_413",
            "slow",
            "slow_ok",
        )
    }
    statuses: dict[int, int] = {}
    oversize_sent: list[int] = []
    samples = {"rss_mb": [], "waiting": []}
    stop = time.monotonic() + seconds

    def note(status: int) -> None:
        statuses[status] = statuses.get(status, 0) + 1

    def check(data: bytes, asked: list[str]) -> bool:
        records = json.loads(data)["records"]
        return len(records) == len(asked) and all(same_record(r, want[t]) for r, t in zip(records, asked))

    async def valid(slow: bool = False) -> None:
        asked = rng.sample(texts, rng.randint(1, 4))
        body = json.dumps({"texts": asked}).encode()
        parts = [body[k : k + max(1, len(body) // 8)] for k in range(0, len(body), max(1, len(body) // 8))] if slow else [body]
        stats["slow" if slow else "valid"] += 1
        try:
            status, data, _ = await exchange(port, post_head(len(body)), parts, 60, delay=0.25 if slow else 0.0)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            stats["lost"] += 1
            return
        note(status)
        if status != 200:
            stats["lost"] += 1
        elif check(data, asked):
            stats["slow_ok" if slow else "valid_ok"] += 1
        else:
            stats["wrong"] += 1

    async def malformed() -> None:
        stats["malformed"] += 1
        if rng.random() < 0.25:  # a lone surrogate among texts: that record's error, the others answered
            asked = rng.sample(texts, 2)
            body = ('{"texts": [%s, "bad \\ud800", %s]}' % (json.dumps(asked[0]), json.dumps(asked[1]))).encode()
            status, data, _ = await exchange(port, post_head(len(body)), [body], 60)
            note(status)
            recs = json.loads(data).get("records", []) if status == 200 else []
            good = (
                len(recs) == 3
                and "error" in recs[1]
                and same_record(recs[0], want[asked[0]])
                and same_record(recs[2], want[asked[1]])
            )
            stats["surrogate_batches"] += 1
            stats["malformed_4xx"] += good
            stats["wrong"] += not good
            return
        body = rng.choice(BAD)
        status, _, _ = await exchange(port, post_head(len(body)), [body], 60)
        note(status)
        stats["malformed_4xx"] += 400 <= status < 500

    async def disconnect() -> None:
        asked = [rng.choice(texts) * 8 for _ in range(48)]  # long texts, several windows each
        body = json.dumps({"texts": asked}).encode()
        stats["disconnected"] += 1
        stats["disconnected_texts"] += len(asked)
        await exchange(port, post_head(len(body)), [body], 60, read=False)  # closes the connection at once

    async def oversize() -> None:
        stats["chunked_oversize"] += 1
        piece = b'{"texts": ["' + b"x" * 65536
        try:
            status, _, sent = await exchange(port, post_head(None), [chunk(piece)] * (4 * limit // len(piece) + 4), 60)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            status, sent = 0, 0
        note(status)
        stats["chunked_413"] += status == 413
        oversize_sent.append(sent)

    async def client(k: int) -> None:
        while time.monotonic() < stop:
            x = rng.random()
            if x < 0.55:
                await valid()
            elif x < 0.75:
                await malformed()
            elif x < 0.85:
                await disconnect()
            elif x < 0.92:
                await oversize()
            else:
                await valid(slow=True)

    async def sampler() -> None:
        while time.monotonic() < stop + 2:
            samples["rss_mb"].append(rss_mb(server.proc.pid))
            try:
                samples["waiting"].append((await asyncio.to_thread(health, server.url))["queue"]["waiting"])
            except OSError:
                pass
            await asyncio.sleep(0.5)

    await asyncio.gather(sampler(), *(client(k) for k in range(clients)))
    await asyncio.sleep(5)  # let the model finish what it holds
    end = health(server.url)
    return {
        "stats": stats,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "oversize_sent_max": max(oversize_sent or [0]),
        "rss_mb": samples["rss_mb"],
        "waiting": samples["waiting"],
        "queue": end["queue"],
        "texts_run": end["texts"],
    }


def thirds(values: list[float]) -> list[float]:
    """The peak of each third of a series (a plateau, not a climb, is what bounded looks like)."""
    n = len(values)
    return [max(values[k * n // 3 : (k + 1) * n // 3] or [0]) for k in range(3)]


def report(result: dict, args, rss_start: float, limit: int) -> str:
    s, q = result["stats"], result["queue"]
    five = sum(v for k, v in result["statuses"].items() if k.startswith("5"))
    lost = s["lost"]
    rows = [
        ("valid requests (1-4 texts)", s["valid"], f"{s['valid_ok']} equal to offline"),
        ("slow senders (body over ~2 s)", s["slow"], f"{s['slow_ok']} equal to offline"),
        (
            "malformed requests",
            s["malformed"],
            f"{s['malformed_4xx']} answered as specified (4xx; a surrogate in texts: its record's error, "
            f"the others answered, {s['surrogate_batches']} such)",
        ),
        ("clients gone after sending 48 long texts", s["disconnected"], f"{s['disconnected_texts']} texts sent"),
        (
            "chunked bodies 4x over the limit",
            s["chunked_oversize"],
            f"{s['chunked_413']} answered 413; at most "
            f"{result['oversize_sent_max'] / 2**20:.1f} MiB sent before the answer "
            f"(limit {limit / 2**20:.1f} MiB)",
        ),
    ]
    lines = [
        f"`python bench/soak.py --seconds {args.seconds:g} --clients {args.clients}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, server `--max-queue {args.max_queue} --timeout {args.timeout:g}`:",
        "",
        "| traffic | requests | outcome |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += [
        "",
        "| target | measured |",
        "|---|---|",
        f"| 0 responses 5xx | {five} (statuses: {', '.join(f'{k}: {v}' for k, v in result['statuses'].items())}) |",
        f"| 0 wrong answers | {s['wrong']} |",
        f"| 0 lost answers (timeouts, dropped connections, non-200 on valid requests) | {lost} |",
        f"| RSS bounded | {rss_start:.0f} MB after start; peak in each third of the run "
        f"{' / '.join(f'{x:.0f}' for x in thirds(result['rss_mb']))} MB; {result['rss_mb'][-1] if result['rss_mb'] else 0:.0f} MB "
        "at the end |",
        f"| queue bounded | peak {q['peak']} texts waiting (limit {q['limit']}), {q['waiting']} at the end |",
        f"| jobs of gone clients dropped before they ran | {q['dropped']} dropped; {q['ran_for_gone']} already in a running batch "
        f"when their client went (a forward pass is not interrupted) |",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a model directory (default: train the quick start NER model once)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=12)
    p.add_argument("--max-queue", type=int, default=1024)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args()
    model = ensure_model(args.model)
    texts = sorted(set(texts_for_bench(400)))[:200]
    _, want = offline(model, texts)  # before the server starts: one heavy process at a time
    import gc

    gc.collect()
    limit = 4 * 100_000 * 64 + 65536  # the server's default body limit (max_chars 100000, 64 texts)
    server = Server(model, ["--max-queue", str(args.max_queue), "--timeout", str(args.timeout)])
    try:
        rss_start = rss_mb(server.proc.pid)
        result = asyncio.run(soak(server, texts, want, args.seconds, args.clients, limit, args.seed))
    finally:
        server.close()
    table = report(result, args, rss_start, limit)
    print(table)
    if not args.no_write:
        (ROOT / "docs" / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
        doc = ROOT / "docs" / "reliability.md"
        text = doc.read_text(encoding="utf-8")
        start, end = "<!-- soak -->", "<!-- /soak -->"
        if start in text and end in text:
            text = text[: text.index(start) + len(start)] + "\n" + table + text[text.index(end) :]
            doc.write_text(text, encoding="utf-8")
    s = result["stats"]
    ok = (
        not any(k.startswith("5") for k in result["statuses"])
        and s["wrong"] == 0
        and s["lost"] == 0
        and s["chunked_413"] == s["chunked_oversize"]
        and s["malformed_4xx"] == s["malformed"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
