"""The docker provider's pure parts, without a Docker engine: the label sweep's choice, the images' content
hashes, a node's command line in its container."""
from __future__ import annotations

import os
import sys

import pytest

from tradedrill.docker import images, labels
from tradedrill.docker.nodes import container_argv


def test_the_sweep_takes_only_tradedrill_objects_of_dead_owners_or_of_its_run():
    mine = labels.run_labels("run1", "/tmp/x")          # owner: this (live) process
    dead = {**mine, labels.RUN: "run0", labels.OWNER: "999999999:1.0"}
    foreign = {"com.example": "x"}
    assert not labels.select(mine)                       # a live run's objects stay
    assert labels.select(dead)                           # a killed run's objects go
    assert not labels.select(foreign) and not labels.select(foreign, orphans_only=False)
    assert labels.select(mine, orphans_only=False)       # down --all
    assert labels.select(mine, run_id="run1") and not labels.select(dead, run_id="run1")


def test_an_image_tag_changes_exactly_when_an_input_changes():
    parent = images.ImageRecipe("base", None, base_packages=("ca-certificates",))
    files = {"a.txt": b"one"}
    child = images.ImageRecipe("svc", parent, "RUN true\n", lambda: dict(files))
    tag = child.tag
    assert tag.startswith("tradedrill/svc:") and child.tag == tag          # stable
    files["a.txt"] = b"two"
    assert child.tag != tag                                                # a copied file
    files["a.txt"] = b"one"
    assert child.tag == tag
    other_parent = images.ImageRecipe("base", None, base_packages=("ca-certificates", "curl"))
    assert images.ImageRecipe("svc", other_parent, "RUN true\n", lambda: dict(files)).tag != tag   # the parent
    assert images.ImageRecipe("svc", parent, "RUN false\n", lambda: dict(files)).tag != tag       # the recipe


def test_the_app_image_installs_the_pinned_runtime_dependencies_only():
    reqs = images.app_requirements()
    assert any(r.startswith("redis==") for r in reqs)
    assert not any(r.startswith("pytest") for r in reqs)
    assert images.REPO_ROOT.joinpath("tradedrill", "docker", "images.py") in images.source_files()
    assert not any("__pycache__" in p.parts for p in images.source_files())


def test_pip_in_a_build_trusts_the_hosts_ca_bundle(tmp_path, monkeypatch):
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_CERT", str(bundle))
    assert images.host_ca_bundle() == bundle
    assert images._deps_context()["host-ca.crt"] == bundle.read_bytes()
    assert "PIP_CERT=/tmp/build/host-ca.crt" in images.APP_DEPS.dockerfile


def test_a_node_command_runs_on_the_images_python():
    assert container_argv([sys.executable, "-m", "reference.engine", "run"]) == \
        [images.APP_PYTHON, "-m", "reference.engine", "run"]
    assert container_argv(["/usr/bin/redis-server", "/x/redis.conf"]) == ["/usr/bin/redis-server", "/x/redis.conf"]
    argv = container_argv([sys.executable, "-m", "reference.mt5.simcli", "serve", "--host", "172.30.17.8"], "mt5")
    assert argv[4] == "--allow-remote"   # a container address is not loopback, and is this machine's own network


def test_down_without_the_docker_sdk_says_so_instead_of_failing(monkeypatch, tmp_path):
    """`tradedrill down` on a machine where a Docker engine runs but the venv lacks the docker extra (a clone set up
    before issue 17) printed a ModuleNotFoundError traceback and stopped nothing after it."""
    from tradedrill.docker import engine
    from tradedrill.providers import docker as provider

    socket = tmp_path / "docker.sock"
    socket.touch()
    monkeypatch.setattr(engine, "SOCKET", str(socket))
    monkeypatch.setitem(sys.modules, "docker", None)   # import docker -> ImportError
    lines = provider.down_leftovers()
    assert len(lines) == 1 and "docker SDK is not installed" in lines[0] and "run.sh setup" in lines[0]


def test_stopping_a_dockerd_we_started_removes_only_the_nft_tables_it_added(monkeypatch):
    """dockerd (iptables-nft) leaves ``table ip nat``/``table ip filter`` (FORWARD policy drop) on the host when it
    stops; the harness deletes those it added, and keeps what existed before and what others made meanwhile."""
    from tradedrill.docker import engine

    tables = {"inet firewall", "ip filter"}          # the host's own, before dockerd

    class Done:
        def __init__(self, rc=0, out=""):
            self.returncode, self.stdout, self.stderr = rc, out, ""

    def fake_nft(*args):
        if args[:2] == ("list", "tables"):
            return Done(out="".join(f"table {t}\n" for t in sorted(tables)))
        if args[:2] == ("delete", "table"):
            tables.discard(" ".join(args[2:]))
            return Done()
        return Done(1)

    monkeypatch.setattr(engine, "_nft", fake_nft)
    before = engine.host_tables()
    assert before == {"inet firewall", "ip filter"}
    tables.update({"ip nat", "ip6 nat", "ip tradedrill_4242"})   # dockerd's, and a drill's kernel fault meanwhile
    started = engine.DockerEngine(started=True, pid=None, tables_before=before)
    assert not started.stop()                                      # no process: nothing stopped, nothing removed
    started.pid = 999_999_999                                      # a dockerd that is already gone
    monkeypatch.setattr(engine, "_record_path", lambda: type("P", (), {"unlink": lambda self, **k: None})())
    started.stop()
    assert started.tables_removed == ("ip nat", "ip6 nat")
    assert tables == {"inet firewall", "ip filter", "ip tradedrill_4242"}
    # one somebody else started is never stopped, and its tables stay
    tables.add("ip nat")
    assert not engine.DockerEngine(started=False, pid=1, tables_before=before).stop() and "ip nat" in tables
    # nft missing or refusing: nothing listed, nothing removed
    monkeypatch.setattr(engine, "_nft", lambda *a: Done(1))
    assert engine.host_tables() is None and engine.remove_added_tables(set()) == []


def test_a_container_gets_the_private_folders_its_options_name_outside_the_run_folder(tmp_path):
    """postgres-restore's sealed logins live in a private /tmp folder the simulators and engines read (their
    account file, the key file): the docker provider mounts exactly those folders, not /tmp, not the run folder."""
    import tempfile
    from pathlib import Path

    from tradedrill.providers.docker import outside_folders

    private = Path(tempfile.mkdtemp(prefix="tradedrill-pglogins-"))
    try:
        (private / "mt5-accounts.json").write_text("{}")
        run_dir = tmp_path / "stack"
        run_dir.mkdir()
        options = {"config_file": private / "mt5-accounts.json", "seed": 7,
                   "overrides": {"credentials_key_file": str(private / "login.key"), "brokers": [{"name": "a"}],
                                 "journal": str(run_dir / "j.duckdb"), "gone": "/tmp/not-there-xyz/file"}}
        assert outside_folders(options, run_dir) == [str(private.resolve())]
        assert outside_folders({"x": "/tmp"}, run_dir) == []
    finally:
        for f in private.iterdir():
            f.unlink()
        private.rmdir()


@pytest.mark.parametrize("build_fails", [False, True])
def test_the_images_command_stops_the_dockerd_it_started(monkeypatch, tmp_path, capsys, build_fails):
    """Issue 17: `python -m tradedrill.docker.images` exited 0 and left the dockerd it started running (and
    containerd, and nft tables ip nat/ip filter). A dockerd the command starts stops when it ends, also when a
    build fails; one that answered already (not started by this command) is left running."""
    import subprocess

    from tradedrill.docker import engine, images

    def stand_in() -> subprocess.Popen:   # a process in dockerd's place
        return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)

    class Client:
        closed = False

        def close(self):
            Client.closed = True

    def build(client, recipe, log_dir, say, records):
        if build_fails:
            raise RuntimeError("build failed")

    monkeypatch.setattr(engine, "client", lambda timeout=0: Client())
    monkeypatch.setattr(engine, "_record_path", lambda: tmp_path / "dockerd.json")
    monkeypatch.setattr(images, "ensure", build)
    ours = stand_in()
    monkeypatch.setattr(engine, "ensure", lambda: engine.DockerEngine(True, ours.pid, None, None, ours))
    try:
        if build_fails:
            with pytest.raises(RuntimeError):
                images.main(["base", "--log-dir", str(tmp_path)])
        else:
            assert images.main(["base", "--log-dir", str(tmp_path)]) == 0
            assert "stopped the dockerd this command started" in capsys.readouterr().out
        assert ours.poll() is not None and Client.closed
        # a dockerd that answered before the command (an earlier run's, recorded: `tradedrill down` stops it)
        theirs = stand_in()
        monkeypatch.setattr(engine, "ensure",
                            lambda: engine.DockerEngine(True, theirs.pid, engine._create_time(theirs.pid)))
        try:
            if not build_fails:
                assert images.main(["base", "--log-dir", str(tmp_path)]) == 0
                assert theirs.poll() is None
        finally:
            theirs.kill()
            theirs.wait()
    finally:
        if ours.poll() is None:
            ours.kill()
        ours.wait()


@pytest.mark.parametrize("subnet", ["127.0.122", "127.1.2", "127.0.95"])
def test_a_loopback_subnet_for_docker_is_refused_in_one_line(subnet):
    """Issue 17: `--provider docker --subnet 127.0.122` was silently replaced by 172.30.17 (the drill ran there),
    while `--subnet 172.31.5` was refused. A loopback subnet given for docker is refused, saying which are valid;
    no --subnet (the drills' default 127.0.0) still runs on 172.30.17."""
    from click.testing import CliRunner

    from scenarios.cli import drill
    from tradedrill.providers.docker import DockerStack
    from tradedrill.topology import TopologyError

    with pytest.raises(TopologyError) as err:
        DockerStack.drill_topology(subnet, ("redis",))
    assert "docker subnets are /24s in 172.30.0.0/16" in str(err.value) and "\n" not in str(err.value)
    got = CliRunner().invoke(drill, ["redis-primary-kill", "--provider", "docker", "--subnet", subnet])
    assert got.exit_code == 2 and "docker subnets are /24s in 172.30.0.0/16" in got.output, got.output
    assert DockerStack.drill_topology("127.0.0", ("redis",)).subnet == os.environ.get("TRADEDRILL_DOCKER_SUBNET",
                                                                                         "172.30.17")
    assert DockerStack.drill_topology("172.30.23", ("redis",)).subnet == "172.30.23"


def test_the_readme_and_down_help_say_what_the_docker_commands_do():
    """Issue 17: the README said `nox -s docker` (nox is only in .venv/bin) and 7 docker tests (there are 8), and
    `tradedrill down --help` did not say it removes the docker provider's leftovers and the dockerd a run started."""
    import ast
    import re
    from pathlib import Path

    from click.testing import CliRunner

    from tradedrill.stackcli import down

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = readme.split("## The docker provider", 1)[1].split("\n## ", 1)[0]
    assert not re.search(r"(?<!bin/)nox -s (docker|drills_docker)", section)
    said = re.search(r"`\.venv/bin/nox -s docker` \((\d+) tests", section)
    tests = [n for p in sorted((root / "tests" / "docker").glob("test_*.py"))
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert said and int(said.group(1)) == len(tests)
    text = " ".join(CliRunner().invoke(down, ["--help"]).output.split())
    assert "docker containers, networks and volumes" in text and "dockerd a run started" in text
