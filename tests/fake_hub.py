"""A local stand-in for the Hugging Face hub's HTTP endpoints, for download tests.

It serves repositories (``{repo_id: {path: bytes}}``) at the routes the hub client uses: the
repository's file list (``/api/models/<repo>[/revision/<rev>]``) and each file's metadata and
content (``HEAD``/``GET /<repo>/resolve/<rev>/<path>``, ranges for resumed downloads). It records
every file whose content was fetched, and can slow each chunk down (to cancel mid-download).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict, chunk_delay: float = 0.0, chunk: int = 1 << 16):
        self.repos = repos
        self.fetched: list = []  # (repo, path) of every content GET
        self.chunk_delay = chunk_delay
        self.chunk = chunk
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _file(self):
                path = unquote(urlparse(self.path).path).lstrip("/")
                for repo, files in hub.repos.items():
                    prefix = repo + "/resolve/"
                    if path.startswith(prefix):
                        name = path[len(prefix):].split("/", 1)[1]
                        return repo, name, files.get(name)
                return None, None, None

            def _meta(self, data):
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Accept-Ranges", "bytes")

            def _not_found(self):
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()

            def do_HEAD(self):  # noqa: N802
                repo, name, data = self._file()
                if data is None:
                    return self._not_found()
                self.send_response(200)
                self._meta(data)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()

            def do_GET(self):  # noqa: N802
                path = unquote(urlparse(self.path).path)
                if path.startswith("/api/models/"):
                    repo = path[len("/api/models/"):].split("/revision/")[0].split("/tree/")[0]
                    if repo not in hub.repos:
                        return self._not_found()
                    files = hub.repos[repo]
                    if "/tree/" in path:  # the recursive file listing
                        listing = [{"type": "file", "path": f, "size": len(files[f]),
                                    "oid": hashlib.sha1(files[f]).hexdigest()} for f in sorted(files)]
                        dirs = sorted({f.rsplit("/", 1)[0] for f in files if "/" in f})
                        listing += [{"type": "directory", "path": d, "oid": "0" * 40} for d in dirs]
                        body = json.dumps(listing).encode()
                    else:
                        body = json.dumps({"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                                           "siblings": [{"rfilename": f} for f in sorted(files)]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                repo, name, data = self._file()
                if data is None:
                    return self._not_found()
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes="):].split("-")[0] or 0)
                hub.fetched.append((repo, name))
                self.send_response(206 if start else 200)
                self._meta(data)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                try:
                    for i in range(start, len(data), hub.chunk):
                        self.wfile.write(data[i:i + hub.chunk])
                        self.wfile.flush()
                        if hub.chunk_delay:
                            time.sleep(hub.chunk_delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def folder_files(folder: Path) -> dict:
    """{relative path: bytes} of every file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@contextlib.contextmanager
def pointed_at(hub: FakeHub, cache: Path, monkeypatch):
    """The hub client sends its requests to ``hub`` and keeps its files under ``cache``."""
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub.url)
    yield
