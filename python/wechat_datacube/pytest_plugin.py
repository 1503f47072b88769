"""The pytest plugin of wechat-datacube (registered on install, entry point ``pytest11``).

Fixtures:

- ``datacube``: a :class:`~wechat_datacube.Datacube` server, reset before each test — no
  account, event, statistic, token, clock move or fault of another test is left.
- ``datacube_server``: the same server, for the whole session, not reset (to share setup
  between tests on purpose).

Settings (``pytest.ini``, ``pyproject.toml``'s ``[tool.pytest.ini_options]``, or ``-o``):

- ``datacube_clock``: the instant the server's clock starts at, and returns to at every reset
  (RFC 3339; real time when empty);
- ``datacube_args``: more ``datacube serve`` flags (e.g. ``--seed fixtures/datacube``).
"""

from __future__ import annotations

import shlex
from typing import Iterator

import pytest

from ._server import Datacube


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "datacube_clock",
        "the instant datacube's clock starts at and returns to at each reset (RFC 3339)",
        default="",
    )
    parser.addini("datacube_args", "more `datacube serve` flags", default="")


@pytest.fixture(scope="session")
def datacube_server(pytestconfig: pytest.Config) -> Iterator[Datacube]:
    """One ``datacube serve`` for the session."""
    clock = pytestconfig.getini("datacube_clock") or None
    args = shlex.split(pytestconfig.getini("datacube_args") or "")
    with Datacube(clock=clock, args=args) as server:
        yield server


@pytest.fixture
def datacube(datacube_server: Datacube) -> Datacube:
    """The session's server, with everything of the tests before reset."""
    datacube_server.reset()
    return datacube_server
