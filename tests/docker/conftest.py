"""The docker provider's tests run only when asked (``nox -s docker`` or ``TRADEDRILL_DOCKER_TESTS=1``): they start
dockerd (as root, when none answers) and build images, which the default suite leaves alone."""
from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TRADEDRILL_DOCKER_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="docker provider tests: run `nox -s docker` or set TRADEDRILL_DOCKER_TESTS=1")
    for item in items:
        if "docker" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def docker_client():
    from tradedrill.docker import engine

    started = engine.ensure()
    client = engine.client(timeout=1800)
    yield client
    client.close()
    started.stop()   # only a dockerd this session started


def tradedrill_objects(client) -> list[str]:
    from tradedrill.docker import labels

    flt = {"label": f"{labels.PROVIDER}=docker"}
    return ([f"container {c.name}" for c in client.containers.list(all=True, filters=flt)]
            + [f"network {n.name}" for n in client.networks.list(filters=flt)])
