"""Fixtures for the image tests: the ``pylb`` image, built once per session by
scripts/build-image (in CI, .ci/run has built it already: this is then a
cache check of about a second), and a box of containers per test, removed by
id when the test ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.discovery.docker_kit import require_docker
from tests.image.image_kit import Box, Built, build_image


@pytest.fixture(scope="session")
def pylb_image() -> Built:
    require_docker()
    built = build_image()
    print(f"\nimage pylb: {built.size_mb:.1f} MB; scripts/build-image took {built.seconds:.1f} s")
    return built


@pytest.fixture
def box(pylb_image: Built) -> Iterator[Box]:
    made = Box()
    try:
        yield made
    finally:
        made.cleanup()
