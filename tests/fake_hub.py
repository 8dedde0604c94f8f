"""A stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, enough for huggingface_hub's own
``create_repo``, ``create_commit`` (regular uploads) and ``snapshot_download``: the tests then push
and download through the library's real code paths, offline."""

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}  # repo id -> path -> content
        self.commits: dict[str, str] = {}  # repo id -> its last commit sha
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def reply(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
                self.send_response(status)
                for k, v in (headers or {"Content-Type": "application/json"}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def json(self, obj, status: int = 200) -> None:
                self.reply(status, json.dumps(obj).encode())

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:
                path = urlparse(self.path).path
                hub.requests.append(f"POST {path}")
                data = self.body()
                if path == "/api/repos/create":
                    req = json.loads(data)
                    repo = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                    hub.repos.setdefault(repo, {})
                    return self.json({"url": f"http://{self.headers['Host']}/{repo}", "name": repo})
                if path == "/api/validate-yaml":
                    return self.json({"errors": [], "warnings": []})
                parts = path.split("/")  # /api/models/ORG/NAME/(preupload|commit)/REV
                if len(parts) < 7:
                    return self.json({"error": "unknown"}, 404)
                repo, action = "/".join(parts[3:5]), parts[5]
                if repo not in hub.repos:
                    return self.json({"error": "Repository not found"}, 404)
                if action == "preupload":
                    files = json.loads(data)["files"]
                    return self.json(
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                    )
                if action == "commit":
                    for line in data.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.repos[repo][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    sha = hashlib.sha1(
                        json.dumps(sorted((p, hashlib.sha256(c).hexdigest()) for p, c in hub.repos[repo].items())).encode()
                    ).hexdigest()
                    hub.commits[repo] = sha
                    return self.json(
                        {"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{sha}", "commitOid": sha, "success": True}
                    )
                return self.json({"error": "unknown"}, 404)

            def do_GET(self) -> None:
                self.serve(head=False)

            def do_HEAD(self) -> None:
                self.serve(head=True)

            def serve(self, head: bool) -> None:
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"{'HEAD' if head else 'GET'} {path}")
                parts = path.split("/")
                if path.startswith("/api/models/"):  # /api/models/ORG/NAME[/revision/REV]
                    repo = "/".join(parts[3:5])
                    if repo not in hub.commits:
                        return self.json({"error": "Repository not found"}, 404)
                    if len(parts) > 5 and parts[5] == "tree":  # /api/models/ORG/NAME/tree/REV: the file list
                        items = sorted(hub.repos[repo].items())
                        return self.json(
                            [{"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()} for p, c in items]
                        )
                    files = [{"rfilename": p, "size": len(c)} for p, c in sorted(hub.repos[repo].items())]
                    return self.json({"id": repo, "modelId": repo, "sha": hub.commits[repo], "siblings": files, "private": False})
                if len(parts) > 5 and parts[3] == "resolve":  # /ORG/NAME/resolve/REV/PATH
                    repo, name = "/".join(parts[1:3]), "/".join(parts[5:])
                    content = hub.repos.get(repo, {}).get(name)
                    if content is None:
                        return self.reply(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                    headers = {"X-Repo-Commit": hub.commits[repo], "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
                               "Content-Type": "application/octet-stream"}  # fmt: skip
                    return self.reply(200, content, headers, head)
                return self.json({"error": "unknown"}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
