"""The server's gate, as a plain ASGI middleware: the Host header, the API key and the body size
are checked before anything else, and the body is read here counting bytes (Starlette's
BaseHTTPMiddleware costs a task and a stream per request)."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from typing import Any

from gplinker.settings import ServeSettings


def host_name(header: str) -> str:
    """The name of a Host header: ``[::1]:8000`` -> ``::1``, ``Example.org:80`` -> ``example.org``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def authorised(header: str | None, key: str) -> bool:
    """``Authorization: Bearer KEY`` (clients) or HTTP Basic with KEY as the password (the page in a
    browser, which then sends it with every request of the page)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), key.encode())
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), key.encode())
    return False


LINGER_S = 2.0  # after a 413, how long the rest of a body is read and thrown away (nginx's lingering close)


async def too_large(message: str, receive, send) -> None:
    """Answer 413 without reading the body, the response whole but held open while the rest of
    the body is read and thrown away (:func:`linger`): closing with unread data makes the kernel
    reset the connection and the client loses the answer, and once a response is complete the
    server no longer hands the app what the client sends."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await linger(receive)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def linger(receive, seconds: float = LINGER_S, most: int = 64 << 20) -> None:
    """Read and discard what a client still sends after its request was refused, for a bounded
    time and size: closing with unread data makes the kernel reset the connection, and the client
    would lose the 413 it was sent. Nothing read is kept."""
    loop = asyncio.get_running_loop()
    end, read = loop.time() + seconds, 0
    while read < most:
        remaining = end - loop.time()
        if remaining <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        read += len(message.get("body", b""))


def problem(status: int, message: str, headers: dict[str, str] | None = None):
    """A JSON error response: ``{"error": message}``."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Guard:
    """Host, API key and body-size checks before anything else. The body is read here, counting
    bytes, so a body without Content-Length (chunked) is refused with 413 as soon as it passes
    the limit, never held whole; the app then gets it replayed."""

    def __init__(self, inner, settings: ServeSettings) -> None:
        self.inner, self.settings = inner, settings
        self.hosts = settings.host_names()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refused = self.refusal(scope, headers)
        if isinstance(refused, str):
            return await too_large(refused, receive, send)
        if refused is not None:
            return await refused(scope, receive, send)
        body = await self.read_body(receive, send)
        if body is None:
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: waits for the client's disconnect

        await self.inner(scope, replay, send)

    async def read_body(self, receive, send) -> bytes | None:
        """The whole body, or None when the client went or the body passed the limit (answered 413)."""
        parts: list[bytes] = []
        size, limit = 0, self.settings.max_body_bytes
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client went before sending its request: nothing to answer
            size += len(message.get("body", b""))
            if size > limit:
                await too_large(
                    f"request body over the limit of {limit} bytes; send fewer or shorter texts per request", receive, send
                )
                return None
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(parts)

    def refusal(self, scope, headers: dict[str, str]) -> Any:
        """The response refusing a request before its body is read (a string: the message of a
        413), or None."""
        host, hosts = headers.get("host"), self.hosts
        if hosts is not None and host is not None and host_name(host) not in hosts:
            return problem(
                400,
                f"this server does not answer to the host name {host_name(host)!r}; reach it as "
                f"{' or '.join(sorted(hosts))}, or start it with --allowed-host NAME",
            )
        path, key = scope.get("path", ""), self.settings.api_key
        if key and path != "/health" and not authorised(headers.get("authorization"), key):
            from fastapi.responses import JSONResponse

            page = path == "/" and scope.get("method") == "GET"
            return JSONResponse(
                {"error": "missing or wrong API key; send 'Authorization: Bearer KEY'"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="gplinker"' if page else "Bearer"},
            )
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.settings.max_body_bytes:
            return (
                f"request body of {int(length)} bytes is over the limit of {self.settings.max_body_bytes} bytes; send "
                "fewer or shorter texts per request"
            )  # a 413, sent by too_large
        return None
