"""Images built on this machine: no registry is reachable, so every image starts from a Debian bookworm base made
with mmdebstrap (or debootstrap) and ``docker import``, and the service images are derived from it with apt-get
inside (containers reach the Debian mirror the host uses).

Every image's tag is a content hash of its inputs (the recipe, the parent's tag, the files it copies), so an image
is built once and rebuilt only when an input changes: ``tradedrill/<name>:<hash>``. The application image is two:
``app-deps`` (the pinned dependencies of pyproject.toml, the slow part) and ``app`` (the project's own source on
top), so a change of the source rebuilds in seconds.

pip inside a build uses the host's CA bundle when one is configured (``PIP_CERT``, ``REQUESTS_CA_BUNDLE``,
``SSL_CERT_FILE`` or pip's ``cert`` setting), and the build resolves the mirror and PyPI hosts as the host does
(their /etc/hosts entries, when the host has some, go into the build as extra hosts).
"""
from __future__ import annotations

import configparser
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "tradedrill"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
RECIPE_VERSION = "1"                   # bump to rebuild every image after a change of this module's logic
BASE_PACKAGES = ("ca-certificates", "iproute2", "procps", "nftables")
APP_APT = ("python3", "python3-venv", "redis-tools")
VENV = "/opt/venv"
APP_PYTHON = f"{VENV}/bin/python"
APP_SOURCE = "/opt/tradedrill"
SOURCE_DIRS = ("tradedrill", "reference", "faults", "scenarios", "reports")
# hosts a build must resolve like the host does (the apt mirror, its security suite, PyPI)
BUILD_HOSTS = ("deb.debian.org", "security.debian.org", "pypi.org", "files.pythonhosted.org")
LABEL = "io.tradedrill.image"


class ImageBuildError(RuntimeError):
    """An image could not be built; the message names the step and its log."""


def _sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def host_ca_bundle() -> Path | None:
    """The CA bundle the host's pip is configured with, if any."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value)
    for conf in ("/etc/pip.conf", os.path.expanduser("~/.config/pip/pip.conf"), os.path.expanduser("~/.pip/pip.conf")):
        parser = configparser.ConfigParser()
        try:
            parser.read(conf)
        except configparser.Error:
            continue
        value = parser.get("global", "cert", fallback=None)
        if value and Path(value).is_file():
            return Path(value)
    return None


def build_hosts() -> dict[str, str]:
    """The host's own resolution of the hosts a build reaches (mirror, PyPI), for the build's /etc/hosts."""
    hosts = {}
    try:
        lines = Path("/etc/hosts").read_text().splitlines()
    except OSError:
        return hosts
    for line in lines:
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            if name in BUILD_HOSTS:
                hosts[name] = fields[0]
    return hosts


def app_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The project's pinned runtime dependencies (not the test extras): what the application image installs."""
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def source_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files of the application image's source layer: the packaged folders (no caches) and pyproject.toml."""
    files = [root / "pyproject.toml", root / "README.md"]
    for d in SOURCE_DIRS:
        for p in sorted((root / d).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
                files.append(p)
    return files


@dataclass
class ImageRecipe:
    """One image: its name, its parent (a recipe or None for the base), the Dockerfile body after ``FROM`` and the
    files it copies (name in the build context -> bytes)."""

    name: str
    parent: "ImageRecipe | None"
    dockerfile: str = ""
    context: Callable[[], dict[str, bytes]] = field(default=lambda: {})
    base_packages: tuple[str, ...] = ()

    def digest(self) -> str:
        """The content hash of everything that makes this image (its parent's hash included)."""
        parts: list[bytes | str] = [RECIPE_VERSION, self.name, self.dockerfile]
        if self.parent is None:
            parts += [SUITE, MIRROR, *self.base_packages]
        else:
            parts.append(self.parent.digest())
        for name, data in sorted(self.context().items()):
            parts += [name, data]
        return _sha(*parts)

    @property
    def tag(self) -> str:
        return f"{REPOSITORY}/{self.name}:{self.digest()}"


def _ca_context() -> dict[str, bytes]:
    ca = host_ca_bundle()
    return {"host-ca.crt": ca.read_bytes() if ca else b""}


def _deps_context() -> dict[str, bytes]:
    return {**_ca_context(), "requirements.txt": ("\n".join(app_requirements()) + "\n").encode()}


def _app_context() -> dict[str, bytes]:
    return {str(p.relative_to(REPO_ROOT)): p.read_bytes() for p in source_files()}


BASE = ImageRecipe("base", None, base_packages=BASE_PACKAGES)
REDIS = ImageRecipe("redis", BASE, "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                                   "--no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*\n")
CLICKHOUSE = ImageRecipe("clickhouse", BASE, "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install "
                                             "-y -qq --no-install-recommends clickhouse-server "
                                             "&& rm -rf /var/lib/apt/lists/*\n")
POSTGRES = ImageRecipe("postgres", BASE, "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install "
                                         "-y -qq --no-install-recommends postgresql-15 "
                                         "&& rm -rf /var/lib/apt/lists/*\n")
APP_DEPS = ImageRecipe(
    "app-deps", BASE,
    f"RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
    f"{' '.join(APP_APT)} && rm -rf /var/lib/apt/lists/*\n"
    "COPY host-ca.crt requirements.txt /tmp/build/\n"
    # the host's CA bundle, when it has one, is the one pip trusts (an intercepting proxy's root is in it)
    f"RUN python3 -m venv {VENV} && if [ -s /tmp/build/host-ca.crt ]; then export PIP_CERT=/tmp/build/host-ca.crt; fi "
    f"&& {VENV}/bin/pip install -q --no-cache-dir --disable-pip-version-check -r /tmp/build/requirements.txt "
    "&& rm -rf /tmp/build\n",
    _deps_context)
APP = ImageRecipe(
    "app", APP_DEPS,
    f"COPY . {APP_SOURCE}/\nENV PYTHONPATH={APP_SOURCE} PYTHONDONTWRITEBYTECODE=1\nWORKDIR {APP_SOURCE}\n",
    _app_context)
RECIPES = {r.name: r for r in (BASE, REDIS, CLICKHOUSE, POSTGRES, APP_DEPS, APP)}
# the image each node kind runs in
IMAGE_OF_KIND = {"redis": REDIS, "sentinel": REDIS, "clickhouse": CLICKHOUSE, "postgres": POSTGRES, "mt5": APP,
                 "engine": APP, "ea": APP, "backend": APP, "nginx": APP}


def exists(client, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


@dataclass
class BuildRecord:
    name: str
    tag: str
    built: bool          # False: the tag was there already (inputs unchanged)
    seconds: float
    size_mb: float


def ensure(client, recipe: ImageRecipe, log_dir: Path, say: Callable[[str], None] = lambda _m: None,
           records: list[BuildRecord] | None = None) -> str:
    """The image of ``recipe`` (and its parents), built only when its tag is absent. Returns the tag."""
    records = records if records is not None else []
    if recipe.parent is not None:
        ensure(client, recipe.parent, log_dir, say, records)
    tag = recipe.tag
    started = time.monotonic()
    built = False
    if not exists(client, tag):
        say(f"building image {tag}")
        log_dir.mkdir(parents=True, exist_ok=True)
        if recipe.parent is None:
            _build_base(client, recipe, tag, log_dir / f"image-{recipe.name}.log")
        else:
            _build_derived(client, recipe, tag, log_dir / f"image-{recipe.name}.log")
        built = True
    size = client.images.get(tag).attrs.get("Size", 0) / 1e6
    records.append(BuildRecord(recipe.name, tag, built, time.monotonic() - started, size))
    return tag


def _bootstrap_command(target: Path, packages: tuple[str, ...]) -> list[str]:
    opts = ["--aptopt=Acquire::Check-Valid-Until \"false\"", "--aptopt=Acquire::Check-Date \"false\""]
    if shutil.which("mmdebstrap"):
        return ["mmdebstrap", "--variant=minbase", "--mode=root", f"--include={','.join(packages)}", *opts,
                SUITE, str(target), MIRROR]
    if shutil.which("debootstrap"):
        return ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(target), MIRROR]
    raise ImageBuildError("neither mmdebstrap nor debootstrap is installed; install Debian's mmdebstrap "
                          "(bash run.sh setup does)")


def _build_base(client, recipe: ImageRecipe, tag: str, log_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="tradedrill-base-") as tmp:
        uses_mmdebstrap = bool(shutil.which("mmdebstrap"))
        target = Path(tmp) / ("rootfs.tar" if uses_mmdebstrap else "rootfs")
        cmd = _bootstrap_command(target, recipe.base_packages)
        with open(log_path, "wb") as log:
            rc = subprocess.run(["nice", "-n", "19", "ionice", "-c3", *cmd], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            raise ImageBuildError(f"{cmd[0]} failed with status {rc}; its log is {log_path}")
        if not uses_mmdebstrap:  # debootstrap leaves a folder: tar it for the import
            with tarfile.open(Path(tmp) / "rootfs.tar", "w") as tar:
                tar.add(target, arcname=".")
            target = Path(tmp) / "rootfs.tar"
        changes = [f"LABEL {LABEL}={recipe.name}", "ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]']
        cli = shutil.which("docker")
        if cli is None:
            raise ImageBuildError("the docker command is missing; install Debian's docker.io (bash run.sh setup does)")
        # the CLI streams the tarball; the SDK's import_image_from_stream fails on it ("header line too long")
        argv = [cli, "import", *(a for c in changes for a in ("--change", c)), str(target), tag]
        with open(log_path, "ab") as log:
            rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            raise ImageBuildError(f"docker import failed with status {rc}; its log is {log_path}")
        if not exists(client, tag):
            raise ImageBuildError(f"docker import of {target} did not produce {tag}")


def _build_derived(client, recipe: ImageRecipe, tag: str, log_path: Path) -> None:
    dockerfile = f"FROM {recipe.parent.tag}\nLABEL {LABEL}={recipe.name}\n{recipe.dockerfile}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile.encode(), **recipe.context()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    hosts = build_hosts()
    lines = []
    with open(log_path, "w") as log:
        try:
            for chunk in client.api.build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True,
                                          decode=True, extra_hosts=hosts or None, network_mode="bridge"):
                text = chunk.get("stream") or chunk.get("status") or ""
                if "error" in chunk:
                    lines.append(chunk["error"])
                    log.write(chunk["error"] + "\n")
                    raise ImageBuildError(f"building {tag} failed: {chunk['error'].strip()}; its log is {log_path}")
                if text:
                    log.write(text)
        except ImageBuildError:
            raise
        except Exception as exc:  # noqa: BLE001 - the daemon's API error, said in one line
            raise ImageBuildError(f"building {tag} failed: {exc}; its log is {log_path}") from None
    if not exists(client, tag):
        raise ImageBuildError(f"building {tag} produced no image; its log is {log_path}")


def prune_old(client, keep: set[str]) -> list[str]:
    """Remove tradedrill images whose tag is not in ``keep`` (older hashes of the same recipes)."""
    removed = []
    for image in client.images.list(filters={"label": LABEL}):
        tags = [t for t in image.tags if t.startswith(f"{REPOSITORY}/")]
        if tags and not set(tags) & keep:
            try:
                client.images.remove(image.id, force=False, noprune=False)
                removed += tags
            except Exception:  # noqa: BLE001 - in use by a container or a child image: kept
                continue
    return removed


def main(argv: list[str] | None = None) -> int:
    """``python -m tradedrill.docker.images [names...]``: build (or find) the images and print what each cost."""
    import argparse

    from tradedrill.docker import engine

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("names", nargs="*", default=list(RECIPES))
    parser.add_argument("--log-dir", type=Path, default=Path("out/docker"))
    args = parser.parse_args(argv)
    docker = engine.ensure()
    try:
        client = engine.client(timeout=1800)
        try:
            records: list[BuildRecord] = []
            seen = set()
            for name in args.names:
                ensure(client, RECIPES[name], args.log_dir, print, records)
            for r in records:
                if r.tag in seen:
                    continue
                seen.add(r.tag)
                print(json.dumps({"image": r.name, "tag": r.tag, "built": r.built, "seconds": round(r.seconds, 1),
                                  "size_mb": round(r.size_mb, 1)}))
        finally:
            client.close()
    finally:
        # a dockerd this command started stops when it ends, as after a drill (its nft tables removed with it);
        # one that answered already (somebody's, or an earlier run's that `tradedrill down` stops) is left alone
        if docker.started_here:
            docker.stop()
            print("stopped the dockerd this command started" +
                  (f" (removed nft tables: {', '.join(docker.tables_removed)})" if docker.tables_removed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
