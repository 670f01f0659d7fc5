"""A self-contained asv site: the JavaScript it needs served from the site itself.

asv 0.6.6's ``www/index.html`` loads jQuery, flot, bootstrap and three small
plugins from three CDNs, and shows "Can not determine continental origin of
swallow" when any of them fails. A site viewed where those CDNs are not
reachable (an air-gapped cluster, this project's offline test machine) needs
local copies. ``fetch_vendor`` gets them once from the npm registry
(``npm pack``; the same releases, checked against asv's integrity hashes where
npm ships the identical file) and ``localize`` points the pages at them.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import atomic_path


@dataclass(frozen=True)
class Asset:
    """One CDN file asv's pages load, and where npm has it."""

    url_part: str
    npm: str
    member: str
    #: asv's integrity hash, when npm ships the byte-identical file (cdnjs re-minifies flot, so not for those).
    sri: str | None = None

    @property
    def name(self) -> str:
        return Path(self.member).name


ASSETS: tuple[Asset, ...] = (
    Asset("code.jquery.com/jquery-3.3.1.min.js", "jquery@3.3.1", "dist/jquery.min.js",
          "sha256-FgpCb/KJQlLNfOu91ta32o/NMZxltwRo8QtmkMRdAu8="),
    Asset("flot/0.8.3/jquery.flot.min.js", "flot@0.8.3", "jquery.flot.js"),
    Asset("flot/0.8.3/jquery.flot.time.min.js", "flot@0.8.3", "jquery.flot.time.js"),
    Asset("flot/0.8.3/jquery.flot.selection.min.js", "flot@0.8.3", "jquery.flot.selection.js"),
    Asset("flot/0.8.3/jquery.flot.categories.min.js", "flot@0.8.3", "jquery.flot.categories.js"),
    Asset("flot-orderbars@1.0.0/js/jquery.flot.orderBars.js", "flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js",
          "sha256-OXNbT0b5b/TgglckAfR8VaJ2ezZv0dHoIeRKjYMKEr8="),
    # 1.0.1 (what asv names on cdnjs) was never published to npm; 1.1.3 keeps its $.fn.stupidtable API.
    Asset("stupidtable/1.0.1/stupidtable.min.js", "stupid-table-plugin@1.1.3", "stupidtable.min.js"),
    Asset("blueimp-md5/2.19.0/js/md5.min.js", "blueimp-md5@2.19.0", "js/md5.min.js"),
    Asset("bootstrap@3.1.1/dist/js/bootstrap.min.js", "bootstrap@3.1.1", "dist/js/bootstrap.min.js",
          "sha256-iY0FoX8s/FEg3c26R6iFw3jAtGbzDwcA5QJ1fiS0A6E="),
    Asset("bootstrap@3.1.1/dist/css/bootstrap.min.css", "bootstrap@3.1.1", "dist/css/bootstrap.min.css",
          "sha256-6VA0SGkrc43SYPvX98q/LhHwm2APqX5us6Vuulsafps="),
)
_TAG = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https?://[^"]+)"[^>]*>', re.S)


def _sri(path: Path) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def missing(vendor_dir: Path) -> list[Asset]:
    return [a for a in ASSETS if not (vendor_dir / a.name).is_file()]


def fetch_vendor(vendor_dir: Path, *, timeout_s: float = 300) -> Path:
    """Download the assets not yet in *vendor_dir* with ``npm pack`` (needs npm and its registry)."""
    todo = missing(vendor_dir)
    if not todo:
        return vendor_dir
    if shutil.which("npm") is None:
        raise ConfigError(f"{len(todo)} asv site asset(s) missing in {vendor_dir} and npm is not installed; "
                          "install npm, or copy the files listed in pytest_coldstart/asv_site.py there")
    vendor_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="coldstart-npm-") as tmp:
        for spec in sorted({a.npm for a in todo}):
            try:
                out = subprocess.run(["npm", "pack", spec, "--pack-destination", tmp, "--silent"],
                                     capture_output=True, text=True, timeout=timeout_s, check=True)
            except (subprocess.SubprocessError, OSError) as exc:
                raise ConfigError(f"npm pack {spec} failed: {getattr(exc, 'stderr', '') or exc}") from None
            tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as tar:
                for asset in (a for a in todo if a.npm == spec):
                    member = tar.extractfile(f"package/{asset.member}")
                    if member is None:
                        raise ConfigError(f"{spec} has no {asset.member}")
                    with atomic_path(vendor_dir / asset.name) as tmp_target:
                        tmp_target.write_bytes(member.read())
                        if asset.sri and _sri(tmp_target) != asset.sri:
                            raise ConfigError(f"{spec} {asset.member} does not match asv's integrity hash {asset.sri}")
    return vendor_dir


def localize(html_dir: Path, vendor_dir: Path) -> list[str]:
    """Point every page of the site at ``vendor/`` copies; returns the URLs replaced.

    Refuses (rather than leave a page that cannot load) if a page loads a
    CDN file this module does not know: asv changed its dependencies.
    """
    absent = missing(vendor_dir)
    if absent:
        raise ConfigError(f"missing in {vendor_dir}: {', '.join(a.name for a in absent)}; run fetch_vendor first")
    (html_dir / "vendor").mkdir(exist_ok=True)
    for asset in ASSETS:
        shutil.copyfile(vendor_dir / asset.name, html_dir / "vendor" / asset.name)
    replaced: list[str] = []
    for page in sorted(html_dir.glob("*.html")):
        text = page.read_text(encoding="utf-8")

        def local(match: re.Match[str], page: Path = page) -> str:
            kind, url = match.group(1), match.group(2)
            asset = next((a for a in ASSETS if a.url_part in url), None)
            if asset is None:
                raise ConfigError(f"{page.name} loads {url}, which pytest-coldstart does not vendor (asv changed?)")
            replaced.append(url)
            if kind == "script":
                return f'<script src="vendor/{asset.name}" onerror="js_load_failure()">'
            return f'<link rel="stylesheet" href="vendor/{asset.name}">'

        page.write_text(_TAG.sub(local, text), encoding="utf-8")
    return replaced
