"""The registry client against an in-process fake OCI distribution server (auth, chunks, redirects)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from images_support import COMPAT, hello_wasm, seed_context, snapshot, store_image, tar_bytes
from wasmlab.runtime.errors import ImageError, RegistryError
from wasmlab.runtime.images import artifact, registry
from wasmlab.runtime.images.build import build
from wasmlab.runtime.images.registry import RegistryClient, TransferEvent
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import canonical_json
from wasmlab.runtime.store.layout import ImageStore, descriptor, digest_of

TOKEN = "good-token"


@dataclass
class FakeRegistry:
    """Just enough of the distribution API, with bearer or basic auth and request logging."""

    auth: str | None = "bearer"  # "bearer", "basic" or None
    redirect_blobs: bool = False
    refuse_tokens: bool = False
    corrupt: set[str] = field(default_factory=set)
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)
    leaked_auth: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def make_handler(reg: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def authorized(self, repo: str) -> bool:
            header = self.headers.get("Authorization", "")
            if reg.auth is None:
                return True
            if reg.auth == "basic":
                if header == "Basic " + base64.b64encode(b"lab:secret").decode():
                    return True
                self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"login"}]}',
                           {"WWW-Authenticate": 'Basic realm="fake"'})
                return False
            if header == f"Bearer {TOKEN}":
                return True
            realm = f"http://{reg.host}/token"
            scope = f"repository:{repo}:pull" if self.command in ("GET", "HEAD") else f"repository:{repo}:pull,push"
            self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}',
                       {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",scope="{scope}"'})
            return False

        def route(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            path, query = parts.path, urllib.parse.parse_qs(parts.query)
            reg.log.append((self.command, path))
            if path == "/token":
                if reg.refuse_tokens or query.get("service") != ["fake"]:
                    return self.reply(403)
                return self.reply(200, json.dumps({"token": TOKEN}).encode())
            if path.startswith("/storage/"):
                if self.headers.get("Authorization"):
                    reg.leaked_auth.append(path)
                data = reg.blobs[path.rsplit("/", 1)[1]]
                return self.reply(200, data if self.command != "HEAD" else b"")
            if path == "/v2/":
                return self.reply(200, b"{}") if self.authorized("") else None
            m = re.match(r"^/v2/(?P<repo>.+)/(?P<kind>blobs|manifests)/(?P<ref>[^/]+)$", path)
            up = re.match(r"^/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[^/]*)$", path)
            repo = (m or up).group("repo") if (m or up) else ""
            if not self.authorized(repo):
                return None
            if up:
                return self.upload(up.group("repo"), up.group("id"), query)
            if not m:
                return self.reply(404)
            if m.group("kind") == "blobs":
                digest = m.group("ref")
                if digest not in reg.blobs:
                    return self.reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}')
                if reg.redirect_blobs and self.command == "GET":
                    return self.reply(307, headers={"Location": f"/storage/{digest}"})
                data = reg.blobs[digest]
                if digest in reg.corrupt:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                return self.reply(200, data, {"Docker-Content-Digest": digest})
            key = (repo, m.group("ref"))
            if self.command == "PUT":
                data = self.body()
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                entry = (data, self.headers.get("Content-Type", ""))
                reg.manifests[key] = entry
                reg.manifests[(repo, digest)] = entry
                return self.reply(201, headers={"Docker-Content-Digest": digest})
            if key not in reg.manifests:
                return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')
            data, mt = reg.manifests[key]
            return self.reply(200, data, {"Content-Type": mt,
                                          "Docker-Content-Digest": "sha256:" + hashlib.sha256(data).hexdigest()})

        def upload(self, repo: str, upload_id: str, query: dict[str, list[str]]) -> None:
            if self.command == "POST":
                new = uuid.uuid4().hex
                reg.uploads[new] = bytearray()
                return self.reply(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{new}"})
            buf = reg.uploads[upload_id]
            if self.command == "PATCH":
                start, _, end = self.headers["Content-Range"].partition("-")
                assert int(start) == len(buf), "chunks must arrive in order"
                chunk = self.body()
                assert int(end) == len(buf) + len(chunk) - 1
                buf.extend(chunk)
                return self.reply(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload_id}",
                                                "Range": f"0-{len(buf) - 1}"})
            if self.command == "PUT":
                buf.extend(self.body())
                digest = query["digest"][0]
                if "sha256:" + hashlib.sha256(buf).hexdigest() != digest:
                    return self.reply(400, b'{"errors":[{"code":"DIGEST_INVALID","message":"bad"}]}')
                reg.blobs[digest] = bytes(buf)
                return self.reply(201, headers={"Location": f"/v2/{repo}/blobs/{digest}"})
            return self.reply(405)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = route

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(reg))
    reg.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield reg
    server.shutdown()
    server.server_close()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageStore:
    monkeypatch.setenv("WASMLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))
    build(seed_context(tmp_path / "ctx"), tag="mywasm-image", annotations=COMPAT, platform="wasi/wasm")
    return ImageStore()


@pytest.fixture
def other(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "other" / "images")


def test_push_and_pull_round_trip_with_bearer_tokens_and_chunks(fake: FakeRegistry, store: ImageStore,
                                                                other: ImageStore) -> None:
    image = store.resolve("mywasm-image")
    events: list[TransferEvent] = []
    pushed = registry.push(store, "mywasm-image", f"{fake.host}/lab/hello:v1", tls_verify=False,
                           chunk_size=1000, progress=events.append)
    assert pushed.digest == image.digest and (pushed.blobs_pushed, pushed.blobs_skipped) == (2, 0)
    patches = [p for c, p in fake.log if c == "PATCH"]
    assert len(patches) > 2  # the layer went up in several chunks
    assert ("GET", "/token") in fake.log
    assert events[-1].kind == "manifest"
    assert any(e.kind == "progress" and e.done < e.total for e in events)
    again = registry.push(store, "mywasm-image", f"{fake.host}/lab/hello:v1", tls_verify=False)
    assert (again.blobs_pushed, again.blobs_skipped) == (0, 2)
    pulled = registry.pull(other, f"{fake.host}/lab/hello:v1", tls_verify=False)
    assert pulled.digest == image.digest and pulled.name == f"{fake.host}/lab/hello:v1"
    assert pulled.blobs_fetched == 2
    assert other.manifest(other.resolve(f"{fake.host}/lab/hello:v1"))["annotations"] == COMPAT
    repeat = registry.pull(other, f"{fake.host}/lab/hello:v1", tls_verify=False)
    assert (repeat.blobs_fetched, repeat.blobs_present) == (0, 2)


def test_pull_by_digest_and_redirected_blobs_do_not_leak_the_token(fake: FakeRegistry, store: ImageStore,
                                                                   other: ImageStore) -> None:
    digest = registry.push(store, "mywasm-image", f"{fake.host}/lab/hello:v1", tls_verify=False).digest
    fake.redirect_blobs = True
    pulled = registry.pull(other, f"{fake.host}/lab/hello@{digest}", tls_verify=False)
    assert pulled.digest == digest and pulled.name is None
    assert other.resolve(f"{fake.host}/lab/hello@{digest}").digest == digest
    assert any(p.startswith("/storage/") for _, p in fake.log)
    assert fake.leaked_auth == []


def test_basic_auth_needs_credentials(fake: FakeRegistry, store: ImageStore, other: ImageStore) -> None:
    fake.auth = "basic"
    with pytest.raises(RegistryError) as err:
        registry.push(store, "mywasm-image", f"{fake.host}/lab/hello:v1", tls_verify=False)
    assert "user name and password" in err.value.message and "credentials" in err.value.hint
    registry.push(store, "mywasm-image", f"{fake.host}/lab/hello:v1", tls_verify=False,
                  credentials=("lab", "secret"))
    assert registry.pull(other, f"{fake.host}/lab/hello:v1", tls_verify=False, credentials=("lab", "secret"))


def test_credentials_come_from_the_auth_file(fake: FakeRegistry, store: ImageStore, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake.auth = "basic"
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {fake.host: {"auth": base64.b64encode(b"lab:secret").decode()}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    assert registry.push(store, "mywasm-image", f"{fake.host}/lab/hello:v1", tls_verify=False).blobs_pushed == 2


def test_refused_token_is_an_auth_error(fake: FakeRegistry, store: ImageStore) -> None:
    fake.refuse_tokens = True
    with pytest.raises(RegistryError) as err:
        registry.push(store, "mywasm-image", f"{fake.host}/lab/hello:v1", tls_verify=False)
    assert "refused access" in err.value.message and "log in" in err.value.hint


def test_corrupt_blob_from_the_registry_leaves_the_store_unchanged(fake: FakeRegistry, store: ImageStore,
                                                                    other: ImageStore, tmp_path: Path) -> None:
    registry.push(store, "mywasm-image", f"{fake.host}/lab/hello:v1", tls_verify=False)
    manifest = store.manifest(store.resolve("mywasm-image"))
    fake.corrupt.add(manifest["layers"][0]["digest"])
    other_store = ImageStore(tmp_path / "third" / "images")
    store_image(other_store, "keep", [tar_bytes([("file", "k", b"k")])])
    before = snapshot(other_store.root)
    with pytest.raises(RegistryError) as err:
        registry.pull(other_store, f"{fake.host}/lab/hello:v1", tls_verify=False)
    assert "does not match its digest" in err.value.message and "again" in err.value.hint
    assert snapshot(other_store.root) == before


def test_missing_image_and_unreachable_registry(fake: FakeRegistry, other: ImageStore) -> None:
    with pytest.raises(RegistryError) as err:
        registry.pull(other, f"{fake.host}/lab/nothing:v1", tls_verify=False)
    assert "not found" in err.value.message and "tag" in err.value.hint
    with pytest.raises(RegistryError) as err:
        registry.pull(other, "127.0.0.1:9/lab/x:v1", tls_verify=False)
    assert "cannot reach registry" in err.value.message
    assert not other.root.exists()


def test_tls_is_verified_by_default(fake: FakeRegistry, other: ImageStore) -> None:
    with pytest.raises(RegistryError) as err:
        registry.pull(other, f"{fake.host}/lab/x:v1")
    assert "--tls-verify=false" in err.value.hint  # the CLI's spelling (the keyword mirrors it: tls_verify)


def test_pull_converts_docker_manifests_and_picks_from_indexes(fake: FakeRegistry, other: ImageStore) -> None:
    fake.auth = None
    layer = tar_bytes([("file", "hello.wasm", hello_wasm())])
    config = canonical_json({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello.wasm"]},
                             "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]}})
    fake.blobs[digest_of(layer)] = layer
    fake.blobs[digest_of(config)] = config
    docker = canonical_json({"schemaVersion": 2, "mediaType": media.DOCKER_MANIFEST,
                             "config": descriptor(media.DOCKER_CONFIG, config),
                             "layers": [descriptor(media.DOCKER_LAYER, layer)]})
    fake.manifests[("lib/app", digest_of(docker))] = (docker, media.DOCKER_MANIFEST)
    index = canonical_json({"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [
        {"mediaType": media.DOCKER_MANIFEST, "digest": "sha256:" + "e" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "s390x"}},
        {"mediaType": media.DOCKER_MANIFEST, "digest": digest_of(docker), "size": len(docker),
         "platform": {"os": "linux", "architecture": "amd64"}}]})
    fake.manifests[("lib/app", "1")] = (index, media.OCI_INDEX)
    pulled = registry.pull(other, f"{fake.host}/lib/app:1", tls_verify=False, platform=("linux", "amd64"))
    assert pulled.converted_from == "docker"
    manifest = other.manifest(other.resolve(f"{fake.host}/lib/app:1"))
    assert manifest["mediaType"] == media.OCI_MANIFEST
    assert manifest["layers"][0]["mediaType"] == media.OCI_LAYER
    with pytest.raises(RegistryError, match="no image for platform linux/arm"):
        registry.pull(other, f"{fake.host}/lib/app:1", tls_verify=False, platform=("linux", "arm"))


def test_pull_turns_a_wasm_artifact_into_a_compat_image(fake: FakeRegistry, store: ImageStore,
                                                       other: ImageStore, tmp_path: Path) -> None:
    fake.auth = None
    artifact.export_wasm_artifact(store, "mywasm-image", tmp_path / "art")
    root = tmp_path / "art"
    index = json.loads((root / "index.json").read_text())
    manifest_bytes = (root / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_bytes()
    for blob in (root / "blobs" / "sha256").iterdir():
        fake.blobs["sha256:" + blob.name] = blob.read_bytes()
    fake.manifests[("lab/art", "v1")] = (manifest_bytes, media.OCI_MANIFEST)
    pulled = registry.pull(other, f"{fake.host}/lab/art:v1", tls_verify=False)
    assert pulled.converted_from == "wasm-artifact"
    image = other.resolve(f"{fake.host}/lab/art:v1")
    assert other.config(other.manifest(image))["config"]["Cmd"] == ["/hello.wasm"]


def test_push_needs_a_destination_for_local_names(store: ImageStore) -> None:
    with pytest.raises(ImageError) as err:
        registry.push(store, "mywasm-image")
    assert "no registry" in err.value.message and "localhost:5000" in err.value.hint


def test_client_answers_only_one_challenge(fake: FakeRegistry) -> None:
    client = RegistryClient(fake.host, tls_verify=False)
    assert client.has_blob("lab/x", "sha256:" + "0" * 64) is False
    assert sum(1 for c, p in fake.log if p == "/token") == 1
