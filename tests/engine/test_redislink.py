"""The engine's Redis link (issue 12): its connections leave from the engine node's own address, and it sees a
primary named by the Sentinels even while its old connection still works."""
from __future__ import annotations

import pytest

from reference.engine.config import EngineConfig
from reference.engine.redislink import RedisLink

pytestmark = pytest.mark.services


def test_connections_leave_from_the_configured_source_address(harness):
    cfg = EngineConfig.from_mapping({**harness.config(), "instance": "Z", "redis_source_address": "127.0.5.77"})
    link = RedisLink(cfg, "probe")
    try:
        assert link.ensure(force=True), "the link did not connect"
        name = link.run(lambda r: r.client_getname())   # the engine's ACL has CLIENT GETNAME, not CLIENT LIST
        seen = [c for c in harness.redis().client_list() if c.get("name") == name]
        assert seen and all(c["addr"].startswith("127.0.5.77:") for c in seen), seen
        assert link.primary_moved() is None   # the Sentinels name the primary it writes to
    finally:
        link.close()
