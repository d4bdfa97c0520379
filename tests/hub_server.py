"""A minimal Hugging Face Hub stand-in on loopback: serves one model repo at one commit.

It answers the ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` requests that
``huggingface_hub.hf_hub_download`` makes, with the headers the real Hub sends
(``X-Repo-Commit``, ``ETag``, ``Content-Length``, ``X-Error-Code``), so tests exercise the
real client code path against ``HF_ENDPOINT=http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class HubRepoServer:
    """Serve the files of ``folder`` as Hub model repo ``repo_id`` at commit ``commit``."""

    def __init__(self, repo_id: str, folder: Path, commit: str) -> None:
        self.repo_id, self.folder, self.commit = repo_id, Path(folder), commit
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._answer(with_body=False)

            def do_GET(self):
                self._answer(with_body=True)

            def _answer(self, with_body: bool) -> None:
                server.requests.append(f"{self.command} {self.path}")
                prefix = f"/{server.repo_id}/resolve/"
                if not self.path.startswith(prefix):
                    return self._error(404, "RepoNotFound")
                revision, _, filename = unquote(self.path[len(prefix) :]).partition("/")
                if revision not in (server.commit, "main"):
                    return self._error(404, "RevisionNotFound")
                path = server.folder / filename
                if not path.is_file():
                    return self._error(404, "EntryNotFound")
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", server.commit)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def _error(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The ``HF_ENDPOINT`` to point huggingface_hub at."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> HubRepoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
