"""The fault proxy's API under malformed input: every body is decoded as Toxiproxy 2.x decodes it (Go's
encoding/json into its structs), anything it cannot use is a 400 that names the field, never a 5xx; the server keeps
serving, and a refused request leaves every proxy and toxic exactly as it was.

A property test throws arbitrary JSON (and some that is not JSON) at every route; the reported inputs are
regressions below it.
"""
from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faults.proxy.decode as decode
from faults.core import UnsafeTarget
from faults.proxy import EmbeddedToxiproxy
from tests.faults.conftest import SEED

HOST = "127.0.4.60"


def _strict(text: str):
    """JSON as a strict parser (Go's, a browser's) reads it: NaN and Infinity are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} in a response")

    return json.loads(text, parse_constant=refuse)


class Api:
    def __init__(self, url: str, upstream: str):
        self.url = url
        self.upstream = upstream
        self.http = requests.Session()

    def call(self, method: str, path: str, body=None, raw: bytes | None = None) -> requests.Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        return self.http.request(method, self.url + path, data=data, timeout=10,
                                 headers={"Content-Type": "application/json"})

    def state(self) -> dict:
        r = self.call("GET", "/proxies")
        assert r.status_code == 200
        return _strict(r.text)

    def baseline(self) -> dict:
        """Two proxies (one disabled) and two toxics; every example starts from here."""
        for name in list(self.state()):
            assert self.call("DELETE", f"/proxies/{name}").status_code == 204
        assert self.call("POST", "/proxies", {"name": "base", "listen": f"{HOST}:0",
                                               "upstream": self.upstream}).status_code == 201
        assert self.call("POST", "/proxies", {"name": "off", "listen": f"{HOST}:0", "upstream": self.upstream,
                                              "enabled": False}).status_code == 201
        assert self.call("POST", "/proxies/base/toxics", {"name": "lat", "type": "latency",
                                                           "attributes": {"latency": 5}}).status_code == 200
        assert self.call("POST", "/proxies/base/toxics", {"name": "bw", "type": "bandwidth", "stream": "upstream",
                                                           "toxicity": 0.5,
                                                           "attributes": {"rate": 100}}).status_code == 200
        return self.state()


@pytest.fixture(scope="module")
def api():
    """One server for the module; the addresses it may bind are confined to this test's block (127.0.4.60-69),
    so arbitrary listen values can never take a port another area uses."""
    original = decode.check_address

    def confined(host, extra=None):
        original(host, extra)
        if not (host.startswith("127.0.4.6") and len(host.split(".")) == 4):
            raise UnsafeTarget(f"{host} is outside this test's block 127.0.4.60-69")
        return host

    decode.check_address = confined
    try:
        with EmbeddedToxiproxy(listen=f"{HOST}:0", seed=SEED) as srv:
            yield Api(srv.url, f"{HOST}:9")
    finally:
        decode.check_address = original


# -- the property ---------------------------------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=10)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=15)
addresses = st.sampled_from([f"{HOST}:0", f"{HOST}:9", "127.0.4.61:0", "nonsense", "0.0.0.0:0", "8.8.8.8:53",
                             f"{HOST}:70000", f"{HOST}:-1", ":0", "localhost:0", "[::1]:0", ""]) | st.text(max_size=8)
names = st.sampled_from(["base", "off", "new", "a/b", "", "..", "a b", "x?y", "100%", "Ünï", "ok:name@1"]) \
    | st.text(max_size=6)
field_values = json_values | addresses | names
proxy_bodies = st.fixed_dictionaries({}, optional={
    "name": names | json_values, "Name": names, "listen": addresses | json_values, "upstream": addresses,
    "enabled": st.booleans() | json_values, "protocol": st.sampled_from(["tcp", "udp", "UDP", "sctp"]) | json_values,
    "seed": json_values, "extra": json_values})
toxic_bodies = st.fixed_dictionaries({}, optional={
    "name": names | json_values, "type": st.sampled_from(["latency", "bandwidth", "timeout", "slicer", "meteor",
                                                          "loss"]) | json_values,
    "stream": st.sampled_from(["upstream", "downstream", "UPSTREAM", "", "sideways"]) | json_values,
    "toxicity": st.floats(-1, 2) | json_values,
    "attributes": st.dictionaries(st.sampled_from(["latency", "jitter", "rate", "timeout", "delay", "average_size",
                                                   "Latency", "bogus"]), field_values, max_size=3) | json_values})
bodies = json_values | proxy_bodies | toxic_bodies | st.lists(proxy_bodies, max_size=3)
raw_bodies = st.sampled_from([b"", b"NaN", b"[NaN]", b'{"name": Infinity}', b'{"toxicity": -Infinity}',
                              b"\xff\xfe{", b"[" * 20_000 + b"]" * 20_000, b'{"enabled": false} trailing',
                              b'{"a": 1', b"nul"])
routes = st.sampled_from([
    ("GET", "/version"), ("GET", "/proxies"), ("POST", "/proxies"), ("POST", "/udp/proxies"), ("POST", "/populate"),
    ("POST", "/reset"), ("GET", "/metrics"), ("GET", "/proxies/base"), ("POST", "/proxies/base"),
    ("PATCH", "/proxies/base"), ("PATCH", "/proxies/off"), ("DELETE", "/proxies/missing"),
    ("GET", "/proxies/base/toxics"), ("POST", "/proxies/base/toxics"), ("POST", "/proxies/off/toxics"),
    ("GET", "/proxies/base/toxics/lat"), ("PATCH", "/proxies/base/toxics/lat"), ("POST", "/proxies/base/toxics/bw"),
    ("DELETE", "/proxies/base/toxics/missing"), ("PUT", "/proxies/base"), ("POST", "/proxies/missing/toxics"),
    ("GET", "/proxies/%ZZ"), ("GET", "/proxies/%C3%28"), ("POST", "/proxies/a/b/c/d/e"), ("DELETE", "/version"),
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(route=routes, body=bodies, raw=st.none() | raw_bodies)
def test_no_body_at_any_route_gets_a_5xx_or_changes_anything_when_refused(api, route, body, raw):
    before = api.baseline()
    method, path = route
    r = api.call(method, path, body, raw)
    assert r.status_code < 500, (route, body, raw, r.status_code, r.text)
    if r.text:
        doc = _strict(r.text) if "json" in r.headers.get("Content-Type", "") else None
        if r.status_code >= 400:
            assert doc["status"] == r.status_code and doc["error"] and "\n" not in doc["error"]
    assert api.call("GET", "/version").status_code == 200  # still serving
    after = api.state()  # and what it serves is strict JSON
    if r.status_code >= 400:
        assert after == before, (route, body, raw, r.text)
    for name in after:  # every proxy that exists can be fetched, and so can its toxics
        assert api.call("GET", f"/proxies/{requests.utils.quote(name, safe='')}").status_code == 200
        for toxic in after[name]["toxics"]:
            quoted = requests.utils.quote(toxic["name"], safe="")
            assert api.call("GET", f"/proxies/{requests.utils.quote(name, safe='')}/toxics/{quoted}"
                            ).status_code == 200


# -- the reported inputs --------------------------------------------------------------------------------------------
def _refused(api, method, path, body=None, raw=None, status=400, *words):
    before = api.state()
    r = api.call(method, path, body, raw)
    assert r.status_code == status, (r.status_code, r.text)
    message = r.json()["error"]
    for word in words:
        assert word in message, message
    assert api.state() == before
    return message


def test_populate_with_a_string_entry(api):
    api.baseline()
    _refused(api, "POST", "/populate", ["abc"], None, 400, "proxy 1", "cannot unmarshal string")
    _refused(api, "POST", "/populate", [{"name": "p1", "upstream": api.upstream, "listen": f"{HOST}:0"}, "abc"],
             None, 400, "proxy 2")  # nothing of the valid first entry was made either
    _refused(api, "POST", "/populate", {"name": "p"}, None, 400, "cannot unmarshal object")


@pytest.mark.parametrize("listen, words", [
    ("nonsense", ("listen", "host:port")),
    (f"{HOST}:70000", ("listen", "0-65535")),
    (f"{HOST}:-1", ("listen",)),
    ("0.0.0.0:8474", ("listen", "outside loopback")),
    ("example.com:80", ("listen", "not an IP address")),
])
def test_bad_listen_on_create_and_on_update(api, listen, words):
    api.baseline()
    _refused(api, "POST", "/proxies", {"name": "n", "upstream": api.upstream, "listen": listen}, None, 400, *words)
    _refused(api, "POST", "/proxies/base", {"listen": listen}, None, 400, *words)
    _refused(api, "PATCH", "/proxies/off", {"listen": listen}, None, 400, *words)
    _refused(api, "POST", "/populate", [{"name": "n", "upstream": api.upstream, "listen": listen}], None, 400, *words)


@pytest.mark.parametrize("upstream", [f"{HOST}:0", f"{HOST}:99999", "nonsense", "8.8.8.8:53"])
def test_bad_upstream(api, upstream):
    api.baseline()
    _refused(api, "POST", "/proxies", {"name": "n", "upstream": upstream, "listen": f"{HOST}:0"}, None, 400,
             "upstream")
    _refused(api, "PATCH", "/proxies/base", {"upstream": upstream}, None, 400, "upstream")


@pytest.mark.parametrize("path, body, field", [
    ("/proxies", {"name": 5, "upstream": "127.0.4.60:9"}, "Proxy.name of type string"),
    ("/proxies", {"name": "n", "upstream": "127.0.4.60:9", "enabled": "yes"}, "Proxy.enabled of type bool"),
    ("/proxies", {"name": "n", "upstream": ["127.0.4.60:9"]}, "Proxy.upstream of type string"),
    ("/proxies", {"name": "n", "upstream": "127.0.4.60:9", "seed": 1.5}, "Proxy.seed"),
    ("/proxies/base", {"enabled": 1}, "Proxy.enabled of type bool"),
    ("/proxies/base", [], "cannot unmarshal array"),
    ("/proxies/base/toxics", {"type": "latency", "name": "t", "toxicity": "x"}, "ToxicWrapper.toxicity"),
    ("/proxies/base/toxics", {"type": "latency", "name": "t", "attributes": {"latency": "slow"}},
     "LatencyToxic.latency of type int64"),
    ("/proxies/base/toxics", {"type": "latency", "name": "t", "attributes": {"latency": 1.5}}, "number 1.5"),
    ("/proxies/base/toxics", {"type": "latency", "name": "t", "attributes": "fast"}, "ToxicWrapper.attributes"),
    ("/proxies/base/toxics/lat", {"attributes": {"jitter": [1]}}, "LatencyToxic.jitter"),
    ("/proxies/base/toxics/lat", "abc", "cannot unmarshal string"),
    ("/proxies/base/toxics", {"type": "latency", "name": "t", "toxicity": 1.5}, "toxicity"),
    ("/proxies/base/toxics", {"type": "latency", "name": "t", "attributes": {"latency": -5}}, "latency"),
])
def test_fields_of_the_wrong_type_name_the_field(api, path, body, field):
    api.baseline()
    _refused(api, "POST", path, body, None, 400, field)


@pytest.mark.parametrize("path, raw", [
    ("/proxies", b'{"name": "n", "upstream": "127.0.4.60:9", "seed": NaN}'),
    ("/proxies/base/toxics", b'{"type": "latency", "name": "t", "toxicity": NaN}'),
    ("/proxies/base/toxics", b'{"type": "latency", "name": "t", "attributes": {"latency": Infinity}}'),
    ("/proxies/base/toxics/lat", b'{"toxicity": -Infinity}'),
    ("/populate", b'[{"name": "n", "upstream": "127.0.4.60:9", "seed": NaN}]'),
])
def test_nan_and_infinity_are_not_json(api, path, raw):
    api.baseline()
    message = _refused(api, "POST", path, None, raw, 400, "bad request body")
    assert "not JSON" in message
    _strict(api.call("GET", "/proxies").text)
    _strict(api.call("GET", "/proxies/base/toxics").text)


@pytest.mark.parametrize("name", ["a/b", "", "..", ".", "a b", "x?y", "x#y", "100%", "tab\there", "é"])
def test_names_that_cannot_be_addressed_are_refused(api, name):
    api.baseline()
    words = ("missing required field: name",) if name == "" else ("cannot be used in a URL path",)
    _refused(api, "POST", "/proxies", {"name": name, "upstream": api.upstream}, None, 400, *words)
    if name:
        _refused(api, "POST", "/proxies/base/toxics", {"name": name, "type": "noop"}, None, 400,
                 "cannot be used in a URL path")
        _refused(api, "POST", "/populate", [{"name": name, "upstream": api.upstream}], None, 400,
                 "cannot be used in a URL path")


def test_names_with_path_punctuation_can_be_fetched_changed_and_deleted(api):
    api.baseline()
    name = "redis:primary@1~(a)"
    assert api.call("POST", "/proxies", {"name": name, "upstream": api.upstream,
                                         "listen": f"{HOST}:0"}).status_code == 201
    for path in (f"/proxies/{name}", f"/proxies/{requests.utils.quote(name, safe='')}"):
        assert api.call("GET", path).json()["name"] == name
    assert api.call("PATCH", f"/proxies/{name}", {"enabled": False}).json()["enabled"] is False
    assert api.call("POST", "/reset").status_code == 204
    assert api.call("DELETE", f"/proxies/{name}").status_code == 204


def test_decoding_follows_go(api):
    """What a client written against Toxiproxy 2.x may send, and gets."""
    api.baseline()
    r = api.call("POST", "/proxies", {"Name": "go1", "UPSTREAM": api.upstream, "listen": f"{HOST}:0",
                                      "enabled": None, "unknown_field": {"x": [1, 2]}})
    assert r.status_code == 201 and r.json()["name"] == "go1" and r.json()["enabled"] is True
    r = api.call("POST", "/proxies/go1", None, b'{"enabled": false} and then anything')
    assert r.status_code == 200 and r.json()["enabled"] is False
    r = api.call("POST", "/proxies/go1", None, b'{"enabled": true, "enabled": false}')
    assert r.json()["enabled"] is False  # the last of a repeated key wins
    r = api.call("POST", "/proxies/go1/toxics", {"type": "latency", "stream": "UPSTREAM",
                                                 "attributes": {"Latency": 100.0, "bogus": "ignored"}})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "latency_upstream" and r.json()["attributes"] == {"latency": 100, "jitter": 0}
    r = api.call("PATCH", "/proxies/go1/toxics/latency_upstream", {"toxicity": 0.25, "name": "renamed",
                                                                   "stream": "downstream"})
    assert r.json()["toxicity"] == 0.25 and r.json()["name"] == "latency_upstream"
    assert r.json()["stream"] == "upstream"  # an update changes attributes and toxicity only
    _refused(api, "POST", "/proxies", None, b"", 400, "bad request body: EOF")
    _refused(api, "POST", "/proxies/go1/toxics", {"type": "latency", "stream": ""}, None, 400, "stream was invalid")


def test_a_listen_address_in_use_is_a_conflict_and_changes_nothing(api):
    before = api.baseline()
    taken = before["base"]["listen"]
    _refused(api, "POST", "/proxies", {"name": "dup", "upstream": api.upstream, "listen": taken}, None, 409,
             "in use")
    _refused(api, "PATCH", "/proxies/off", {"listen": taken, "enabled": True}, None, 409, "in use")
    _refused(api, "POST", "/populate", [{"name": "p1", "upstream": api.upstream, "listen": f"{HOST}:0"},
                                        {"name": "base", "upstream": "127.0.4.60:10", "listen": taken},
                                        {"name": "p3", "upstream": api.upstream, "listen": taken}], None, 409,
             "in use")
    assert api.state() == before  # the replaced 'base' came back with its toxics, p1 is gone again


def test_an_upstream_that_loops_back_is_refused_and_the_server_keeps_serving():
    """A proxy whose upstream is its own listener (or another proxy's that leads back) would loop one connection
    until the file descriptors run out and wedge the API (found by a new user): refused with 400."""
    import json as _json
    import urllib.error
    import urllib.request

    from faults.proxy import EmbeddedToxiproxy

    with EmbeddedToxiproxy("127.0.4.69:0") as server:
        base = server.url

        def post(path, body):
            req = urllib.request.Request(base + path, data=_json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        code, text = post("/proxies", {"name": "self", "listen": "127.0.4.69:22004", "upstream": "127.0.4.69:22004"})
        assert code == 400 and "loop" in text, (code, text)
        code, _ = post("/proxies", {"name": "a", "listen": "127.0.4.69:22005", "upstream": "127.0.4.69:22006"})
        assert code == 201
        code, text = post("/proxies", {"name": "b", "listen": "127.0.4.69:22006", "upstream": "127.0.4.69:22005"})
        assert code == 400 and "loop" in text, (code, text)
        code, text = post("/populate", [{"name": "c", "listen": "127.0.4.69:22007", "upstream": "127.0.4.69:22007"}])
        assert code == 400 and "loop" in text, (code, text)
        with urllib.request.urlopen(base + "/version", timeout=5) as resp:
            assert resp.status == 200
