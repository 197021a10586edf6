"""``tradedrill`` with the first replay attempt's teardown held (``python -m tests.stateful.replay_hold_driver replay
ARGS``): with ``TRADEDRILL_TEST_HOLD_TEARDOWN=<folder>`` the stateful session's first ``down`` writes
``<folder>/teardown`` and waits until ``<folder>/release`` exists, its nodes still up, so a test can interrupt a
finished attempt's teardown. Test code only; production has no switch."""
from __future__ import annotations

import os
import sys
from pathlib import Path

hold = os.environ.get("TRADEDRILL_TEST_HOLD_TEARDOWN")
if hold:
    from scenarios.stateful import StatefulSession
    from tradedrill.waiting import wait_until

    original_down = StatefulSession.down

    def held_down(self):
        marker = Path(hold, "teardown")
        if not marker.exists():
            marker.write_text("")
            wait_until(lambda: Path(hold, "release").exists(), 120, "the test to release the teardown")
        return original_down(self)

    StatefulSession.down = held_down

if __name__ == "__main__":
    from tradedrill.cli import main

    sys.exit(main())
