"""deploy/requirements.lock, which the image installs with ``--require-hashes --no-deps``, still satisfies
what pyproject.toml and client/pyproject.toml ask for (the image's extras included): a dependency added
or tightened without ``bash deploy/lock.sh`` fails here, not in the image build or, worse, at run time.

The lock's own consistency (every package's dependencies in it) is proven where the image is built:
``pip check`` runs there after the install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.conftest import DEPLOY, REPO

LOCK = DEPLOY / "requirements.lock"
IMAGE_EXTRAS = ("postgres", "otel")
# The image's interpreter and platform, for which the lock is resolved (deploy/lock.sh).
IMAGE_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _pins() -> dict[str, tuple[Version, int]]:
    """{name: (version, number of hashes)} of the entries that apply to the image."""
    pins: dict[str, tuple[Version, int]] = {}
    name = ""
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            marker = match.group(3)
            applies = marker is None or Marker(marker).evaluate(dict(IMAGE_ENVIRONMENT))
            name = canonicalize_name(match.group(1)) if applies else ""
            if name:
                pins[name] = (Version(match.group(2)), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def _project(path: Path) -> dict[str, object]:
    project: dict[str, object] = tomllib.loads(path.read_text())["project"]
    return project


def _required() -> list[Requirement]:
    service = _project(REPO / "pyproject.toml")
    client = _project(REPO / "client" / "pyproject.toml")
    extras = service["optional-dependencies"]
    assert isinstance(extras, dict)
    texts = list(service["dependencies"])  # type: ignore[call-overload]
    texts += [text for extra in IMAGE_EXTRAS for text in extras[extra]]
    texts += list(client["dependencies"])  # type: ignore[call-overload]
    return [Requirement(text) for text in texts]


def test_every_requirement_of_the_image_is_pinned_with_hashes_in_the_lock() -> None:
    pins = _pins()
    client_version = _project(REPO / "client" / "pyproject.toml")["version"]
    problems = []
    for requirement in _required():
        name = canonicalize_name(requirement.name)
        if name == "order-worker-client":  # installed from client/, not from the lock
            assert requirement.specifier.contains(str(client_version)), requirement
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(dict(IMAGE_ENVIRONMENT)):
            continue
        if name not in pins:
            problems.append(f"{requirement}: not in the lock")
            continue
        version, hashes = pins[name]
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement}: the lock has {version}")
        if hashes == 0:
            problems.append(f"{name}: no hash")
    assert not problems, "deploy/requirements.lock is stale (run 'bash deploy/lock.sh'): " + "; ".join(
        problems
    )


def test_every_entry_of_the_lock_has_hashes_and_the_local_packages_are_not_in_it() -> None:
    pins = _pins()
    assert len(pins) > 20
    assert all(hashes > 0 for _version, hashes in pins.values())
    assert not {"order-worker", "order-worker-client", "order-worker-sandbox"} & set(pins)
