"""The registry as a weight source with a floor: how fast a docker start pulled its image, against the
fastest the registry delivers a layer.

The floor probe reads the image's manifest from the registry's v2 API (``GET /v2/<name>/manifests/<ref>``
with the manifest media types in ``Accept``; a manifest list or OCI index is resolved to this machine's
platform), then times plain ``GET /v2/<name>/blobs/<digest>`` of the largest layer, read to nowhere, best of
a few passes: a floor is the fastest the source delivers, not its average. It runs after the server stopped
(it never competes with a measured start) and once per image digest per runner.

The pull's efficiency compares like with like: the bytes on the wire (the manifest's compressed layer
sizes) over the ``image_pull`` phase, against the floor's GB/s of the same wire bytes. The pull also
unpacks the layers; what it loses against the floor is that, and the daemon's own overhead.
A configured floor (``--coldstart-docker-registry-floor-gbps``) replaces the probe.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.efficiency import FLOOR_CONFIGURED, FLOOR_PROBE, GB, FloorBandwidth, LoadEfficiency
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.phase import Phase

SOURCE_REGISTRY = "registry"
BASIS_PULL = "image_pull phase (harness)"
DEFAULT_PASSES = 3
DOCKER_HUB = "registry-1.docker.io"
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
_CHUNK = 1 << 20
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class ImageRef:
    """``127.0.0.1:5000/coldstart/base:tag`` -> registry ``127.0.0.1:5000``, name ``coldstart/base``, ``tag``."""

    registry: str
    name: str
    reference: str

    @property
    def base_url(self) -> str:
        # Plain HTTP only on loopback (as Docker itself allows); everything else speaks TLS.
        host = self.registry.rsplit(":", 1)[0] if not self.registry.startswith("[") else self.registry
        loopback = host in ("localhost", "[::1]") or host.startswith("127.")
        return f"{'http' if loopback else 'https'}://{self.registry}"


def parse_image(image: str, digest: str | None = None) -> ImageRef:
    """Where *image* lives; *digest* (the pulled manifest's, ``sha256:...``) is used over its tag."""
    name, _, at = image.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, name if slash else f"library/{name}"
    repo, sep, tag = path.rpartition(":")
    if not sep:
        repo, tag = path, "latest"
    return ImageRef(registry, repo, digest or at or tag)


@dataclass(frozen=True)
class Manifest:
    """The layers of one image manifest: (digest, compressed bytes) each."""

    digest: str | None
    layers: tuple[tuple[str, int], ...]

    @property
    def wire_bytes(self) -> int:
        return sum(size for _, size in self.layers)

    @property
    def largest(self) -> tuple[str, int]:
        return max(self.layers, key=lambda layer: layer[1])


class RegistryClient:
    """GETs against a registry's v2 API; an anonymous bearer token where the registry asks for one."""

    def __init__(self, ref: ImageRef, *, timeout_s: float = 60.0, http: httpx.Client | None = None) -> None:
        self.ref = ref
        self.http = http or httpx.Client(timeout=timeout_s, follow_redirects=True)
        self._token: str | None = None

    def close(self) -> None:
        self.http.close()

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**extra, **({"Authorization": f"Bearer {self._token}"} if self._token else {})}

    def _authorize(self, challenge: str) -> None:
        """Docker's token flow: ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` -> a pull token."""
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if not challenge.lower().startswith("bearer") or "realm" not in params:
            raise ConfigError(f"registry {self.ref.registry} wants credentials ({challenge[:120]}); configure "
                              "the floor with --coldstart-docker-registry-floor-gbps instead")
        realm = params.pop("realm")
        response = self.http.get(realm, params=params)
        response.raise_for_status()
        body = response.json()
        self._token = body.get("token") or body.get("access_token")

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        url = f"{self.ref.base_url}/v2/{self.ref.name}/{path}"
        response = self.http.get(url, headers=self._headers(headers or {}))
        if response.status_code == 401 and self._token is None:
            self._authorize(response.headers.get("www-authenticate", ""))
            response = self.http.get(url, headers=self._headers(headers or {}))
        if response.status_code != 200:
            raise ConfigError(f"registry {self.ref.registry}: GET /v2/{self.ref.name}/{path} answered "
                              f"{response.status_code}")
        return response

    def manifest(self) -> Manifest:
        """The image manifest of this machine's platform, following a manifest list or OCI index."""
        accept = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = self.get(f"manifests/{self.ref.reference}", accept)
        body = response.json()
        if "manifests" in body:  # a list / index: pick linux/<this arch>
            arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
            entries = [m for m in body["manifests"]
                       if m.get("platform", {}).get("os") == "linux" and m.get("platform", {}).get("architecture") == arch]
            if not entries:
                raise ConfigError(f"{self.ref.name}@{self.ref.reference} has no linux/{arch} manifest")
            response = self.get(f"manifests/{entries[0]['digest']}", accept)
            body = response.json()
        layers = tuple((str(layer["digest"]), int(layer["size"])) for layer in body.get("layers", ()))
        if not layers:
            raise ConfigError(f"the manifest of {self.ref.name}@{self.ref.reference} lists no layers")
        return Manifest(response.headers.get("docker-content-digest"), layers)

    def time_blob(self, digest: str, clock: Clock) -> tuple[float, int]:
        """Seconds to GET one blob to nowhere, and the bytes read."""
        url = f"{self.ref.base_url}/v2/{self.ref.name}/blobs/{digest}"
        started = clock.monotonic_s()
        got = 0
        with self.http.stream("GET", url, headers=self._headers({})) as response:
            if response.status_code != 200:
                raise ConfigError(f"registry {self.ref.registry}: GET blob {digest[:19]} answered "
                                  f"{response.status_code}")
            for chunk in response.iter_raw(_CHUNK):  # raw: the bytes on the wire, as the daemon receives them
                got += len(chunk)
        return clock.monotonic_s() - started, got


def probe_registry(client: RegistryClient, manifest: Manifest, *, passes: int = DEFAULT_PASSES,
                   clock: Clock | None = None) -> FloorBandwidth:
    """The registry's floor: best of *passes* plain GETs of the image's largest layer blob."""
    clock = clock or SystemClock()
    digest, size = manifest.largest
    samples = [client.time_blob(digest, clock) for _ in range(max(1, passes))]
    rates = [n / s / GB for s, n in samples if s > 0 and n > 0]
    if not rates:
        raise ConfigError(f"registry probe of {digest[:19]} read too fast to time; configure "
                          "--coldstart-docker-registry-floor-gbps instead")
    detail = (f"GET /v2/{client.ref.name}/blobs/{digest[:19]}... from {client.ref.registry} (largest of "
              f"{len(manifest.layers)} layer(s), {size / 1e6:.0f} MB), one connection, best of {len(rates)} passes "
              f"({', '.join(f'{r:.3g}' for r in rates)} GB/s)")
    return FloorBandwidth(round(max(rates), 6), FLOOR_PROBE, detail)


def pull_efficiency(pull_s: float | None, wire_bytes: int | None, floor: FloorBandwidth | None,
                    note: str = "") -> LoadEfficiency:
    """The pull as a load from the registry: ``weight_bytes`` are the image's bytes on the wire."""
    return LoadEfficiency(weight_bytes=wire_bytes, load_s=pull_s, load_basis=BASIS_PULL if pull_s else None,
                          source_kind=SOURCE_REGISTRY, floor_gbps=floor.gbps if floor else None,
                          floor_source=floor.source if floor else None, floor_detail=floor.detail if floor else "",
                          note=note)


class RegistryFloors:
    """Pull efficiencies for the docker starts of one runner; the probe runs once per image digest."""

    def __init__(self, *, clock: Clock | None = None, passes: int = DEFAULT_PASSES) -> None:
        self.clock = clock or SystemClock()
        self.passes = passes
        self._seen: dict[str, tuple[Manifest, FloorBandwidth | None] | str] = {}

    def _probe(self, ref: ImageRef, configured: FloorBandwidth | None) -> tuple[Manifest, FloorBandwidth | None] | str:
        key = f"{ref.registry}/{ref.name}@{ref.reference}|{configured}"
        if key not in self._seen:
            client = RegistryClient(ref)
            try:
                manifest = client.manifest()
                floor = configured or probe_registry(client, manifest, passes=self.passes, clock=self.clock)
                self._seen[key] = (manifest, floor)
            except (ConfigError, httpx.HTTPError, ValueError, KeyError) as exc:
                self._seen[key] = f"registry probe failed: {exc}"
            finally:
                client.close()
        return self._seen[key]

    def assess(self, phases: Sequence[Phase], reported: Mapping[str, Any]) -> LoadEfficiency | None:
        """The result's ``pull_efficiency``; None for a start that pulls no image (not a docker start)."""
        image = reported.get("image")
        if not isinstance(image, str):
            return None
        pull = next((p for p in phases if p.name == "image_pull"), None)
        pull_s = pull.duration_s if pull is not None else None
        if not pull_s:
            why = ("image_pull not observed: the image was local before the start (image_cached)"
                   if reported.get("image_cached") else "image_pull not observed")
            return pull_efficiency(None, None, None, why)
        configured = reported.get("registry_floor_gbps")
        floor = (FloorBandwidth(float(configured), FLOOR_CONFIGURED, "--coldstart-docker-registry-floor-gbps")
                 if isinstance(configured, (int, float)) and configured > 0 else None)
        digest = reported.get("image_digest")
        probed = self._probe(parse_image(image, digest if isinstance(digest, str) else None), floor)
        if isinstance(probed, str):
            return pull_efficiency(pull_s, None, floor, probed)
        manifest, floor = probed
        return pull_efficiency(pull_s, manifest.wire_bytes, floor)
