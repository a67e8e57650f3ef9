"""Fixtures for the real-Docker tests: the image (built once per session), a
network and a name prefix per run, and removal of everything the tests made."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from docker_kit import DockerKit, build_image, require_docker


@pytest.fixture(scope="session")
def docker_session() -> Iterator[DockerKit]:
    require_docker()
    build_image()
    kit = DockerKit()
    try:
        kit.network = kit.create_network()
        yield kit
    finally:
        kit.cleanup()


@pytest.fixture
def kit(docker_session: DockerKit) -> Iterator[DockerKit]:
    try:
        yield docker_session
    finally:
        docker_session.remove_containers()
