"""The stateful test's stack: one per test module on 127.0.93.x (``TRADEDRILL_STATEFUL_SUBNET`` moves it), reset
between examples by ``scenarios.stateful.StatefulSession``; the example database in ``out/hypothesis``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from scenarios.stateful import SAFETY_CHECKERS, SessionOptions, StatefulSession

REPO = Path(__file__).resolve().parents[2]
SUBNET = os.environ.get("TRADEDRILL_STATEFUL_SUBNET", "127.0.93")
PROFILE = os.environ.get("TRADEDRILL_STATEFUL_PROFILE", "ci")
DATABASE = Path(os.environ.get("TRADEDRILL_HYPOTHESIS_DB", REPO / "out" / "hypothesis"))


def variant_options(variant: str | None, out_dir: Path, subnet: str = SUBNET,
                    judged: tuple[str, ...] = SAFETY_CHECKERS, say=None) -> SessionOptions:
    from tests.variants.engines import SIGNAL_OF

    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return SessionOptions(subnet=subnet, out_dir=out_dir, judged=judged, signal_of=SIGNAL_OF.get(variant or ""), say=say,
                          engine_command=(sys.executable, "-m", "tests.variants.engines", variant) if variant else None,
                          engine_env={"PYTHONPATH": pythonpath} if variant else {})


def pytest_configure(config):
    """An unknown ``TRADEDRILL_STATEFUL_PROFILE`` is refused in one line (exit 4) before any stack starts (the
    second new user: it was found only after the stateful stack had started)."""
    from scenarios.stateful import PROFILES

    if PROFILE not in PROFILES:
        raise pytest.UsageError(f"TRADEDRILL_STATEFUL_PROFILE={PROFILE!r} is not a stateful profile; give one of "
                                f"{', '.join(PROFILES)} (default ci)")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with StatefulSession(variant_options(None, tmp_path_factory.mktemp("stateful"))) as s:
        yield s
