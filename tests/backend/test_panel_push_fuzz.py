"""Fuzzing the panel's pushed state (BE-3, issue 15): any ``Authorization`` header on ``GET /panel/events`` that is
not a live session gets a one-line JSON 401 (never a 5xx, never a stream), and the session's stored order list,
whatever Redis holds under its key, reads as valid alert ids or nothing."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.backend import webhook
from reference.backend.panel import SESSION_ORDERS, alert_ids_of
from tests.backend.conftest import make_config

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                max_size=3), max_leaves=10)
stored = st.none() | st.text(max_size=60) | _json.map(json.dumps) | \
    st.lists(st.from_regex(r"[A-Za-z0-9_.:\-]{1,60}", fullmatch=True), max_size=80).map(json.dumps)


@settings(max_examples=300, deadline=None)
@given(raw=stored)
def test_any_stored_order_list_reads_as_valid_alert_ids(raw):
    ids = alert_ids_of(raw)
    assert len(ids) <= SESSION_ORDERS and all(webhook.ALERT_ID_RE.fullmatch(a) for a in ids)


_ascii = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
headers = _ascii.map(lambda t: "Bearer " + t) | _ascii   # what an HTTP client can put in a header


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(auth=headers)
def test_events_without_a_live_session_are_a_json_401(tmp_path, redis_node, rdb, auth):
    from fastapi.testclient import TestClient

    from reference.backend.app import create_app

    with TestClient(create_app(make_config(tmp_path, redis_node.port))) as c:
        got = c.get("/panel/events", headers={"authorization": auth})
        assert got.status_code == 401 and "\n" not in got.json()["error"]
