"""``python -m reference.engine run --config FILE --instance A`` (same as ``tradedrill engine run``)."""
import sys

from reference.cli import engine

sys.exit(engine())
