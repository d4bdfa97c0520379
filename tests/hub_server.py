"""A minimal Hugging Face Hub stand-in on loopback: model repos that can be downloaded and pushed.

Downloads: the ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` requests that
``huggingface_hub.hf_hub_download`` makes, answered with the headers the real Hub sends
(``X-Repo-Commit``, ``ETag``, ``Content-Length``, ``X-Error-Code``; LFS files also
``X-Linked-Etag`` and ``X-Linked-Size``).

Uploads: what ``HfApi.create_repo`` and ``HfApi.upload_folder`` call (huggingface_hub 1.x–2.x,
``_commit_api``): ``POST /api/repos/create``; ``POST /api/validate-yaml`` (the model card's
metadata); ``POST /api/models/{repo_id}/preupload/{revision}``
(binary files such as ``*.safetensors`` are answered ``lfs``, text files ``regular``, as the
Hub does); the Git LFS batch API ``POST /{repo_id}.git/info/lfs/objects/batch`` with a
``basic`` upload action (``PUT``) and a ``verify`` action; and the ndjson
``POST /api/models/{repo_id}/commit/{revision}``, which makes a new commit on ``main``. The Xet
protocol is not served: clients must run with ``HF_HUB_DISABLE_XET=1``, which makes
huggingface_hub use LFS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Suffixes the stand-in stores as LFS objects (the Hub's default .gitattributes has these).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".npz", ".h5")


class HubRepoServer:
    """Serve model repo ``repo_id``: the files of ``folder`` at ``commit``, plus pushed commits.

    Attributes
    ----------
    commits : dict
        ``{commit sha: {path: bytes}}``, every commit of the repo.
    main : str or None
        The commit ``main`` points at.
    requests : list of str
        ``"METHOD path"`` of every request, in order.
    """

    def __init__(self, repo_id: str, folder: Path | None = None, commit: str | None = None) -> None:
        self.repo_id = repo_id
        self.requests: list[str] = []
        self.commits: dict[str, dict[str, bytes]] = {}
        self.main: str | None = None
        self.lfs: dict[str, bytes] = {}
        self.repo_exists = folder is not None
        if folder is not None:
            files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
            self.commits[commit] = files
            self.main = commit
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._resolve(with_body=False)

            def do_GET(self):
                self._resolve(with_body=True)

            def do_POST(self):
                server.requests.append(f"POST {self.path}")
                path = urlsplit(self.path).path
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._lock:
                    server._post(self, unquote(path), body)

            def do_PUT(self):
                server.requests.append(f"PUT {self.path}")
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                oid = urlsplit(self.path).path.rsplit("/", 1)[-1]
                if hashlib.sha256(body).hexdigest() != oid:
                    return server._reply(self, 400, {"error": "sha256 mismatch"})
                server.lfs[oid] = body
                server._reply(self, 200, {})

            def _resolve(self, with_body: bool) -> None:
                server.requests.append(f"{self.command} {self.path}")
                prefix = f"/{server.repo_id}/resolve/"
                if not self.path.startswith(prefix):
                    return self._error(404, "RepoNotFound")
                revision, _, filename = unquote(self.path[len(prefix) :]).partition("/")
                commit = server.main if revision == "main" else revision
                if commit not in server.commits:
                    return self._error(404, "RevisionNotFound")
                body = server.commits[commit].get(filename)
                if body is None:
                    return self._error(404, "EntryNotFound")
                digest = hashlib.sha256(body).hexdigest()
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{digest}"')
                if filename.endswith(LFS_SUFFIXES):
                    self.send_header("X-Linked-Etag", f'"{digest}"')
                    self.send_header("X-Linked-Size", str(len(body)))
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

    # ---------------------------------------------------------------- uploads
    def _post(self, handler: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        api = f"/api/models/{self.repo_id}/"
        if path == "/api/repos/create":
            request = json.loads(body)
            name = "/".join(p for p in (request.get("organization"), request["name"]) if p)
            if name != self.repo_id:
                return self._reply(handler, 403, {"error": f"cannot create {name}"})
            if self.repo_exists:
                return self._reply(handler, 409, {"error": "You already created this model repo"})
            self.repo_exists = True
            return self._reply(handler, 200, {"url": f"{self.endpoint}/{self.repo_id}"})
        if path == "/api/validate-yaml":  # the model card's metadata block
            return self._validate_yaml(handler, json.loads(body)["content"])
        if not self.repo_exists:
            return self._reply(handler, 404, {"error": "Repository not found"}, "RepoNotFound")
        if path.startswith(api + "preupload/"):
            files = json.loads(body)["files"]
            modes = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                    "shouldIgnore": False,
                }
                for f in files
            ]
            return self._reply(handler, 200, {"files": modes})
        if path == f"/{self.repo_id}.git/info/lfs/objects/batch":
            objects = []
            for obj in json.loads(body)["objects"]:
                href = f"{self.endpoint}/lfs-upload/{obj['oid']}"
                actions = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
                objects.append({"oid": obj["oid"], "size": obj["size"], "actions": actions})
            return self._reply(handler, 200, {"transfer": "basic", "objects": objects})
        if path.startswith("/lfs-upload/") and path.endswith("/verify"):
            oid = json.loads(body)["oid"]
            return self._reply(handler, 200 if oid in self.lfs else 404, {})
        if path.startswith(api + "commit/"):
            return self._commit(handler, body)
        self._reply(handler, 404, {"error": f"no endpoint {path}"})

    def _commit(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        files = dict(self.commits.get(self.main, {})) if self.main else {}
        summary = ""
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value["summary"]
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    missing = {"error": f"LFS object {value['oid']} was never uploaded"}
                    return self._reply(handler, 400, missing)
                files[value["path"]] = self.lfs[value["oid"]]
            elif key == "deletedFile":
                files.pop(value["path"], None)
        digest = hashlib.sha1((self.main or "").encode() + summary.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        commit = digest.hexdigest()
        self.commits[commit] = files
        self.main = commit
        url = f"{self.endpoint}/{self.repo_id}/commit/{commit}"
        self._reply(handler, 200, {"commitUrl": url, "commitOid": commit, "success": True})

    def _validate_yaml(self, handler: BaseHTTPRequestHandler, content: str) -> None:
        import yaml

        head, sep, _ = content.removeprefix("---\n").partition("\n---")
        try:
            ok = content.startswith("---\n") and sep and isinstance(yaml.safe_load(head), dict)
        except yaml.YAMLError:
            ok = False
        if not ok:
            errors = [{"message": "README.md metadata is not a YAML mapping"}]
            return self._reply(handler, 400, {"errors": errors, "warnings": []})
        self._reply(handler, 200, {"errors": [], "warnings": []})

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, payload: dict, code: str | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        if code is not None:
            handler.send_header("X-Error-Code", code)
        handler.end_headers()
        handler.wfile.write(data)

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
