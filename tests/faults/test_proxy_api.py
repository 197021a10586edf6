"""The real toxiproxy-python client drives every endpoint of our server; raw HTTP covers what it cannot call."""
import socket

import pytest
import requests
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from .conftest import hostport


def test_toxiproxy_python_drives_every_endpoint(toxiproxy_client, toxiproxy_server, echo_server):
    tp = toxiproxy_client
    assert tp.running()
    assert b"version" in tp.version()
    proxy = tp.create(upstream=echo_server, name="echo", listen="127.0.4.21:0")
    assert proxy.listen.startswith("127.0.4.21:") and not proxy.listen.endswith(":0")
    with pytest.raises(ProxyExists):
        tp.create(upstream=echo_server, name="echo")
    assert set(tp.proxies()) == {"echo"}
    assert tp.get_proxy("echo").upstream == echo_server and tp.get_proxy("nope") is None

    proxy.add_toxic(type="latency", attributes={"latency": 10, "jitter": 1})
    proxy.add_toxic(type="bandwidth", stream="upstream", toxicity=0.5, attributes={"rate": 100}, name="bw")
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "bw"}
    assert toxics["bw"].stream == "upstream" and toxics["bw"].toxicity == 0.5
    assert proxy.get_toxic("bw").attributes == {"rate": 100}
    with pytest.raises(ProxyExists):
        proxy.add_toxic(type="latency", attributes={"latency": 10})
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="meteor", name="m")
    assert proxy.destroy_toxic("bw")
    with pytest.raises(NotFound):
        proxy.destroy_toxic("bw")

    with proxy.down():
        assert tp.get_proxy("echo").enabled is False
        with pytest.raises(OSError):
            socket.create_connection(hostport(proxy.listen), timeout=1)
    assert tp.get_proxy("echo").enabled is True

    proxy.disable()
    assert tp.reset()
    assert tp.get_proxy("echo").enabled is True and proxy.toxics() == {}

    made = tp.populate([{"name": "echo", "upstream": echo_server, "listen": proxy.listen},
                        {"name": "echo2", "upstream": echo_server, "listen": "127.0.4.21:0"}])
    assert [p.name for p in made] == ["echo2"]
    assert tp.destroy(tp.get_proxy("echo2"))
    with pytest.raises(NotFound):
        tp.get_proxy("echo").destroy_toxic("none")
    tp.destroy_all()
    assert tp.proxies() == {}


def test_raw_endpoints_populate_update_metrics_and_errors(toxiproxy_server, echo_server):
    url = toxiproxy_server.url
    r = requests.post(f"{url}/populate", json=[{"name": "a", "upstream": echo_server, "listen": "127.0.4.21:0"}],
                      timeout=5)
    assert r.status_code == 201 and r.json()["proxies"][0]["name"] == "a"
    assert requests.post(f"{url}/populate", json=[{"name": "a", "upstream": echo_server}], timeout=5).status_code == 201
    r = requests.post(f"{url}/proxies/a/toxics", json={"type": "latency", "attributes": {"latency": 5}}, timeout=5)
    assert r.status_code == 200 and r.json()["name"] == "latency_downstream"
    r = requests.patch(f"{url}/proxies/a/toxics/latency_downstream", json={"attributes": {"latency": 7}}, timeout=5)
    assert r.json()["attributes"] == {"latency": 7, "jitter": 0}
    assert requests.get(f"{url}/proxies/a/toxics/latency_downstream", timeout=5).json()["attributes"]["latency"] == 7
    r = requests.patch(f"{url}/proxies/a", json={"enabled": False}, timeout=5)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert requests.get(f"{url}/proxies/missing", timeout=5).json() == {"error": "proxy not found", "status": 404}
    assert requests.post(f"{url}/proxies", json={"name": "x"}, timeout=5).status_code == 400
    r = requests.post(f"{url}/proxies", json={"name": "x", "upstream": "8.8.8.8:53"}, timeout=5)
    assert r.status_code == 400 and "outside loopback" in r.json()["error"]
    r = requests.post(f"{url}/proxies/a/toxics", json={"type": "latency", "name": "l2",
                                                        "attributes": {"latency": "slow"}}, timeout=5)
    assert r.status_code == 400
    assert requests.post(f"{url}/proxies/a/toxics", json={"type": "latency", "stream": "sideways"},
                         timeout=5).status_code == 400
    metrics = requests.get(f"{url}/metrics", timeout=5)
    assert metrics.status_code == 200 and "toxiproxy_proxy_received_bytes_total" in metrics.text
    assert requests.delete(f"{url}/proxies/a", timeout=5).status_code == 204
    assert requests.get(f"{url}/nowhere", timeout=5).status_code == 404
