"""Pulling and pushing images over the OCI distribution API, using only the standard library.

Supports bearer-token auth (answering ``WWW-Authenticate`` challenges) and basic auth,
HEAD checks that skip blobs the registry already has, chunked uploads (POST, PATCH...,
PUT), redirects for blob downloads, and TLS verification on by default
(``tls_verify=False`` also allows plain HTTP, as podman's ``--tls-verify=false`` does).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import ssl
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from wasmlab.runtime import __version__
from wasmlab.runtime.errors import ImageError, RegistryError, StoreError
from wasmlab.runtime.images.archive import convert_docker_manifest
from wasmlab.runtime.images.artifact import wasm_artifact_to_image
from wasmlab.runtime.images.platform import host_platform_default
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import canonical_json
from wasmlab.runtime.store.layout import ImageStore, Transaction, digest_of, manifest_blobs, parse_json
from wasmlab.runtime.store.reference import DOCKER_HUB, Reference, parse

ACCEPT = ", ".join([media.OCI_MANIFEST, media.OCI_INDEX, media.DOCKER_MANIFEST, media.DOCKER_MANIFEST_LIST])
CHUNK_SIZE = 5 << 20
MAX_MANIFEST = 4 << 20
_HINT_TLS = "for a local registry without TLS, add --tls-verify=false"
_HINT_AUTH = "log in first, or pass credentials (user, password)"


@dataclass(frozen=True)
class TransferEvent:
    """Progress of a pull or push: one blob or manifest at a time."""

    kind: str  # "skip", "start", "progress", "done", "manifest"
    digest: str
    done: int = 0
    total: int = 0


TransferProgress = Callable[[TransferEvent], None]


@dataclass(frozen=True)
class PullResult:
    reference: str
    name: str | None
    digest: str
    blobs_fetched: int
    blobs_present: int
    converted_from: str | None = None


@dataclass(frozen=True)
class PushResult:
    reference: str
    digest: str
    blobs_pushed: int
    blobs_skipped: int


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: http.client.HTTPResponse | None = None
    conn: http.client.HTTPConnection | None = None
    url: str = ""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.conn is not None:
            self.conn.close()


def _parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = value.strip().partition(" ")
    params = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', rest))
    params.update({k: v for k, v in re.findall(r'(\w+)\s*=\s*([^",\s]+)', rest) if k not in params})
    return scheme.lower(), params


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body[:200].decode(errors="replace").strip()
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors:
        first = errors[0]
        if isinstance(first, dict):
            return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    return str(data)[:200]


def auth_from_file(registry: str) -> tuple[str, str] | None:
    """Credentials for REGISTRY from ``$REGISTRY_AUTH_FILE`` or containers' ``auth.json``, if any."""
    candidates = [os.environ.get("REGISTRY_AUTH_FILE", "")]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        candidates.append(os.path.join(runtime_dir, "containers", "auth.json"))
    candidates.append(os.path.expanduser("~/.config/containers/auth.json"))
    candidates.append(os.path.expanduser("~/.docker/config.json"))
    for path in candidates:
        if not path or not os.path.isfile(path):
            continue
        try:
            auths = json.loads(Path(path).read_text()).get("auths") or {}
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        entry = auths.get(registry) or auths.get(f"https://{registry}")
        if isinstance(entry, dict) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            return user, password
    return None


class RegistryClient:
    """A client for one registry host (``host[:port]``)."""

    def __init__(self, registry: str, *, tls_verify: bool = True, credentials: tuple[str, str] | None = None,
                 timeout: float = 60.0, chunk_size: int = CHUNK_SIZE) -> None:
        self.registry = registry
        self.host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
        self.tls_verify = tls_verify
        self.credentials = credentials if credentials is not None else auth_from_file(registry)
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.scheme: str | None = "https" if tls_verify else None
        self._tokens: dict[str, str] = {}
        self._basic = False

    # -- transport ----------------------------------------------------------------------

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            ctx = ssl.create_default_context()
            if not self.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(host, timeout=self.timeout, context=ctx)
        return http.client.HTTPConnection(host, timeout=self.timeout)

    def _send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | IO[bytes] | None,
              stream: bool) -> _Response:
        parts = urllib.parse.urlsplit(url)
        conn = self._connect(parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(method, target or "/", body=body, headers=dict(headers))
            resp = conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise RegistryError(f"TLS certificate of {parts.netloc} is not trusted ({exc.verify_message})",
                                _HINT_TLS) from None
        except (OSError, http.client.HTTPException):
            conn.close()
            raise
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if stream and resp.status < 300:
            return _Response(resp.status, hdrs, stream=resp, conn=conn, url=url)
        data = resp.read(MAX_MANIFEST + 1) if method != "HEAD" else b""
        conn.close()
        return _Response(resp.status, hdrs, data, url=url)

    def _base(self) -> str:
        if self.scheme is None:
            try:
                probe = self._send("GET", f"https://{self.host}/v2/", {"User-Agent": _agent()}, None, False)
                del probe
                self.scheme = "https"
            except ssl.SSLError:
                self.scheme = "http"
            except OSError as exc:
                try:
                    self._send("GET", f"http://{self.host}/v2/", {"User-Agent": _agent()}, None, False)
                    self.scheme = "http"
                except OSError:
                    raise self._unreachable(exc) from None
        return f"{self.scheme}://{self.host}"

    def _unreachable(self, exc: BaseException) -> RegistryError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        hint = "check the host and port" + ("; " + _HINT_TLS if self.tls_verify else ", and that the registry runs")
        return RegistryError(f"cannot reach registry {self.registry}: {reason}", hint)

    def request(self, method: str, path: str, *, scope: str, headers: Mapping[str, str] | None = None,
                body: bytes | IO[bytes] | None = None, stream: bool = False, redirects: int = 5) -> _Response:
        """Send a request with auth, answering one 401 challenge and following redirects."""
        url = path if path.startswith(("http://", "https://")) else self._base() + path
        hdrs = {"User-Agent": _agent(), **(headers or {})}
        own_host = urllib.parse.urlsplit(url).netloc == self.host
        for attempt in range(2):
            if own_host:
                auth = self._auth_header(scope)
                if auth:
                    hdrs["Authorization"] = auth
            try:
                resp = self._send(method, url, hdrs, body, stream)
            except ssl.SSLError as exc:
                reason = exc.reason or exc
                raise RegistryError(f"TLS error talking to {self.registry}: {reason}", _HINT_TLS) from None
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from None
            if resp.status == 401 and attempt == 0 and own_host and not hasattr(body, "read"):
                self._answer_challenge(resp.header("www-authenticate"), scope)
                continue
            if resp.status in (301, 302, 303, 307, 308) and redirects > 0 and resp.header("location"):
                location = urllib.parse.urljoin(url, resp.header("location"))
                if method in ("GET", "HEAD"):
                    hdrs.pop("Authorization", None)
                    return self._follow(method, location, hdrs, stream, redirects - 1)
            return resp
        return resp

    def _follow(self, method: str, url: str, headers: dict[str, str], stream: bool,
                redirects: int) -> _Response:
        try:
            resp = self._send(method, url, headers, None, stream)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        if resp.status in (301, 302, 303, 307, 308) and redirects > 0 and resp.header("location"):
            return self._follow(method, urllib.parse.urljoin(url, resp.header("location")), headers, stream,
                                redirects - 1)
        return resp

    # -- auth ---------------------------------------------------------------------------

    def _auth_header(self, scope: str) -> str | None:
        if scope in self._tokens:
            return f"Bearer {self._tokens[scope]}"
        if self._basic and self.credentials:
            raw = f"{self.credentials[0]}:{self.credentials[1]}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    def _answer_challenge(self, challenge: str, scope: str) -> None:
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if not self.credentials:
                raise RegistryError(f"registry {self.registry} requires a user name and password", _HINT_AUTH)
            self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"registry {self.registry} asked for unsupported authentication "
                                f"{challenge!r}", _HINT_AUTH)
        query = {"service": params.get("service", "")} if params.get("service") else {}
        wanted = params.get("scope") or scope
        realm = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(
            {**query, "scope": wanted})
        headers = {"User-Agent": _agent()}
        if self.credentials:
            raw = f"{self.credentials[0]}:{self.credentials[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        try:
            resp = self._send("GET", realm, headers, None, False)
        except (OSError, http.client.HTTPException) as exc:
            realm_url = params["realm"]
            raise RegistryError(f"cannot reach the token service {realm_url}: {exc}", _HINT_AUTH) from None
        if resp.status != 200:
            raise RegistryError(f"the token service refused access to {wanted} (HTTP {resp.status})",
                                _HINT_AUTH)
        try:
            data = json.loads(resp.body)
            token = data.get("token") or data.get("access_token")
        except (json.JSONDecodeError, AttributeError):
            token = None
        if not token:
            raise RegistryError("the token service answered without a token", _HINT_AUTH)
        self._tokens[scope] = str(token)

    # -- API ----------------------------------------------------------------------------

    def _check(self, resp: _Response, what: str, ok: tuple[int, ...]) -> _Response:
        if resp.status in ok:
            return resp
        detail = _error_text(resp.body)
        resp.close()
        if resp.status in (401, 403):
            text = f"{what}: access denied by {self.registry} (HTTP {resp.status}) {detail}"
            raise RegistryError(text.strip(), _HINT_AUTH)
        if resp.status == 404:
            raise RegistryError(f"{what}: not found on {self.registry}", "check the repository name and tag")
        raise RegistryError(f"{what}: registry {self.registry} answered HTTP {resp.status} {detail}".strip(),
                            "try again; if it persists, check the registry's logs")

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        """The manifest (or index) bytes and media type for REFERENCE (tag or digest)."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull",
                            headers={"Accept": ACCEPT})
        self._check(resp, f"manifest {repo}:{reference}", (200,))
        if len(resp.body) > MAX_MANIFEST:
            raise RegistryError(f"manifest {repo}:{reference} is larger than {MAX_MANIFEST} bytes",
                                "this does not look like an image manifest")
        mt = resp.header("content-type").split(";")[0].strip()
        if reference.startswith("sha256:") and digest_of(resp.body) != reference:
            raise RegistryError(f"manifest {repo}@{reference[:19]} does not match its digest",
                                "the registry or a proxy altered it; try again")
        header_digest = resp.header("docker-content-digest")
        if header_digest.startswith("sha256:") and digest_of(resp.body) != header_digest:
            raise RegistryError(f"manifest {repo}:{reference} does not match the announced digest",
                                "the registry or a proxy altered it; try again")
        if not mt or mt in ("application/json", "text/plain"):
            try:
                mt = str(json.loads(resp.body).get("mediaType") or media.OCI_MANIFEST)
            except (json.JSONDecodeError, AttributeError):
                mt = media.OCI_MANIFEST
        return resp.body, mt

    def has_blob(self, repo: str, digest: str, scope: str | None = None) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=scope or f"repository:{repo}:pull")
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        self._check(resp, f"blob {digest[:19]}", (200,))
        return False

    @contextlib.contextmanager
    def open_blob(self, repo: str, digest: str) -> Iterator[http.client.HTTPResponse]:
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull", stream=True)
        self._check(resp, f"blob {digest[:19]}", (200,))
        if resp.stream is None:
            raise RegistryError(f"blob {digest[:19]}: empty answer from {self.registry}", "try again")
        try:
            yield resp.stream
        finally:
            resp.close()

    def upload_blob(self, repo: str, fh: IO[bytes], digest: str, size: int,
                    progress: TransferProgress | None = None) -> None:
        """Upload a blob in chunks: POST to start, PATCH each chunk, PUT with the digest."""
        scope = f"repository:{repo}:pull,push"
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope,
                            headers={"Content-Length": "0"}, body=b"")
        self._check(resp, f"starting upload of {digest[:19]}", (202,))
        location = urllib.parse.urljoin(resp.url, resp.header("location"))
        sent = 0
        while sent < size or size == 0:
            chunk = fh.read(self.chunk_size)
            if not chunk:
                break
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                       "Content-Range": f"{sent}-{sent + len(chunk) - 1}"}
            resp = self.request("PATCH", location, scope=scope, headers=headers, body=chunk)
            self._check(resp, f"uploading {digest[:19]}", (202,))
            location = urllib.parse.urljoin(location, resp.header("location") or location)
            sent += len(chunk)
            if progress:
                progress(TransferEvent("progress", digest, sent, size))
        if sent != size:
            raise RegistryError(f"blob {digest[:19]} changed during the push ({sent} of {size} bytes)",
                                "run the push again")
        sep = "&" if "?" in location else "?"
        resp = self.request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", scope=scope,
                            headers={"Content-Length": "0"}, body=b"")
        self._check(resp, f"finishing upload of {digest[:19]}", (201, 204))

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        resp = self.request("PUT", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull,push",
                            headers={"Content-Type": media_type, "Content-Length": str(len(data))}, body=data)
        self._check(resp, f"manifest {repo}:{reference}", (200, 201, 202))
        return resp.header("docker-content-digest") or digest_of(data)


def _agent() -> str:
    return f"wasmlab/{__version__}"


def parse_remote(text: str) -> Reference:
    """A registry reference; names without a registry are on docker.io, as podman resolves them."""
    return parse(text.removeprefix("docker://"), default_registry=DOCKER_HUB)


def _choose(index: Mapping[str, Any], platform: tuple[str, str] | None) -> Mapping[str, Any]:
    children = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    if not children:
        raise RegistryError("the image index lists no manifests", "the image on the registry is broken")
    wanted = platform or (host_platform_default().os, host_platform_default().architecture)
    for d in children:
        plat = d.get("platform") or {}
        if (plat.get("os"), plat.get("architecture")) == wanted:
            return d
    wasm = [d for d in children if (d.get("platform") or {}).get("architecture") == "wasm"]
    if len(children) == 1 or (platform is None and len(wasm) == 1):
        return children[0] if len(children) == 1 else wasm[0]
    have = ", ".join(f"{(d.get('platform') or {}).get('os')}/{(d.get('platform') or {}).get('architecture')}"
                     for d in children)
    raise RegistryError(f"no image for platform {wanted[0]}/{wanted[1]} (the registry has {have})",
                        "pass platform=(os, architecture) for one of them")


def pull(store: ImageStore, reference: str, *, tls_verify: bool = True,
         credentials: tuple[str, str] | None = None, platform: tuple[str, str] | None = None,
         progress: TransferProgress | None = None, client: RegistryClient | None = None) -> PullResult:
    """Pull REFERENCE (``host[:port]/repo[:tag|@digest]``) into the store, verifying every blob.

    Docker manifests are stored as OCI manifests; Wasm OCI artifacts become compat images.
    """
    ref = parse_remote(reference)
    client = client or RegistryClient(ref.registry, tls_verify=tls_verify, credentials=credentials)
    repo = ref.repository
    data, mt = client.get_manifest(repo, ref.reference)
    if mt in media.INDEX_TYPES:
        index = _json(data, "image index")
        chosen = _choose(index, platform)
        data, mt = client.get_manifest(repo, str(chosen["digest"]))
    if mt not in media.MANIFEST_TYPES:
        raise RegistryError(f"{reference} is a {mt!r}, not an image", "pull an image or a Wasm artifact")
    manifest = _json(data, "image manifest")
    fetched = present = 0
    converted: str | None = None
    with store.transaction() as txn:
        for desc in manifest_blobs(manifest):
            digest = str(desc["digest"])
            if txn.has_blob(digest):
                present += 1
                if progress:
                    progress(TransferEvent("skip", digest, 0, int(desc.get("size", 0))))
                continue
            _fetch(client, txn, repo, desc, progress)
            fetched += 1
        if (manifest.get("config") or {}).get("mediaType") == media.WASM_CONFIG:
            digest, size = wasm_artifact_to_image(txn, manifest)
            converted = "wasm-artifact"
        elif mt == media.DOCKER_MANIFEST:
            m = txn.put_blob(canonical_json(convert_docker_manifest(manifest)))
            digest, size = m["digest"], m["size"]
            converted = "docker"
        else:
            m = txn.put_blob(data)
            digest, size = m["digest"], m["size"]
        name = str(ref.with_tag(ref.tag)) if ref.tag else None
        txn.add_image(digest, name, size=size)
    if progress:
        progress(TransferEvent("manifest", digest, size, size))
    return PullResult(str(ref), name, digest, fetched, present, converted)


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj: dict[str, Any] = parse_json(data, what, "the image on the registry is broken")
    except StoreError as exc:
        raise RegistryError(exc.message, exc.hint) from None
    return obj


def _fetch(client: RegistryClient, txn: Transaction, repo: str, desc: Mapping[str, Any],
           progress: TransferProgress | None) -> None:
    digest = str(desc["digest"])
    size = desc.get("size") if isinstance(desc.get("size"), int) else None
    if progress:
        progress(TransferEvent("start", digest, 0, size or 0))

    def on_bytes(done: int) -> None:
        if progress:
            progress(TransferEvent("progress", digest, done, size or 0))

    with client.open_blob(repo, digest) as stream:
        try:
            txn.put_stream(stream, digest, size, on_bytes)
        except StoreError as exc:
            raise RegistryError(f"blob {digest[:19]} from {client.registry}: {exc.message}",
                                "try the pull again") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(f"download of blob {digest[:19]} failed: {exc}",
                                "try the pull again") from None
    if progress:
        progress(TransferEvent("done", digest, size or 0, size or 0))


def push(store: ImageStore, name: str, destination: str | None = None, *, tls_verify: bool = True,
         credentials: tuple[str, str] | None = None, progress: TransferProgress | None = None,
         chunk_size: int = CHUNK_SIZE, client: RegistryClient | None = None) -> PushResult:
    """Push image NAME to DESTINATION (``host[:port]/repo[:tag]``; default: the image's own name)."""
    image = store.resolve(name)
    dest = parse_remote(destination or image.name or "")
    if dest.registry == "localhost" and not destination:
        raise ImageError(f"{image.name} has no registry to push to",
                         "give a destination such as localhost:5000/name:tag")
    client = client or RegistryClient(dest.registry, tls_verify=tls_verify, credentials=credentials,
                                      chunk_size=chunk_size)
    manifest_bytes = store.get_blob(image.digest)
    manifest = _json(manifest_bytes, "image manifest")
    repo = dest.repository
    pushed = skipped = 0
    scope = f"repository:{repo}:pull,push"
    for desc in manifest_blobs(manifest):
        digest = str(desc["digest"])
        if client.has_blob(repo, digest, scope):
            skipped += 1
            if progress:
                progress(TransferEvent("skip", digest, 0, int(desc.get("size", 0))))
            continue
        size = store.verify_blob(digest, size=desc.get("size"))
        if progress:
            progress(TransferEvent("start", digest, 0, size))
        with open(store.blob_path(digest), "rb") as fh:
            client.upload_blob(repo, fh, digest, size, progress)
        pushed += 1
        if progress:
            progress(TransferEvent("done", digest, size, size))
    reference = dest.digest or dest.tag or "latest"
    media_type = str(manifest.get("mediaType") or image.media_type)
    digest = client.put_manifest(repo, reference, manifest_bytes, media_type)
    if progress:
        progress(TransferEvent("manifest", digest, len(manifest_bytes), len(manifest_bytes)))
    return PushResult(str(dest), digest, pushed, skipped)

