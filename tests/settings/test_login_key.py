"""The broker-login key file (PG-1): made once 0600, refused when others could read it or it is not ours, never shown
in a repr or an error."""
from __future__ import annotations

import base64
import logging
import os

import pytest

from reference.settings import BrokerLogin, CredentialsError, LoginKey, default_key_path


def key_text(path) -> str:
    return path.read_text().strip()


def test_the_key_is_made_once_0600_in_a_private_folder(tmp_path):
    path = default_key_path(tmp_path)
    first = LoginKey.ensure(path)
    assert path == tmp_path / "secrets" / "broker-logins.key"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert len(base64.urlsafe_b64decode(key_text(path))) == 32
    again = LoginKey.ensure(path)
    assert again.key_id == first.key_id          # not replaced by a second ensure


def test_the_key_is_in_no_repr_and_no_error(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key = LoginKey.ensure(default_key_path(tmp_path))
    secret = key_text(key.path)
    raw = base64.urlsafe_b64decode(secret)
    other = LoginKey.generate()
    sealed = key.seal("mt5-primary", BrokerLogin(5001, "pw", "Server"))
    with pytest.raises(CredentialsError) as caught:
        other.unseal("mt5-primary", sealed)
    shown = repr(key) + str(caught.value) + caplog.text
    assert secret not in shown and raw.hex() not in shown and repr(raw) not in shown
    assert key.key_id in repr(key)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_key_others_can_read_is_refused(tmp_path, mode):
    path = default_key_path(tmp_path)
    LoginKey.ensure(path)
    os.chmod(path, mode)
    with pytest.raises(CredentialsError, match=rf"has mode {mode:04o}; .*chmod 600 {path}"):
        LoginKey.load(path)


def test_a_symlinked_or_missing_or_garbled_key_is_refused(tmp_path):
    real = LoginKey.ensure(tmp_path / "real.key").path
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(CredentialsError, match="a symlink is refused"):
        LoginKey.load(link)
    with pytest.raises(CredentialsError, match="does not exist: without it the stored logins cannot be read"):
        LoginKey.load(tmp_path / "absent.key")
    real.write_text("not a key\n")
    with pytest.raises(CredentialsError, match="does not hold a key"):
        LoginKey.load(real)


def test_a_key_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    path = LoginKey.ensure(tmp_path / "k.key").path
    os.chown(path, 65534, 65534)
    with pytest.raises(CredentialsError, match="belongs to uid 65534"):
        LoginKey.load(path)


def test_a_login_is_checked_and_hides_its_password():
    login = BrokerLogin(5001, "hunter2", "Broker-Demo")
    assert "hunter2" not in repr(login)
    assert tuple(login) == (5001, "hunter2", "Broker-Demo")
    for bad in (0, -1, 2**63, True, "5001"):
        with pytest.raises(CredentialsError, match="account number"):
            BrokerLogin(bad, "p", "s")
    with pytest.raises(CredentialsError, match="broker name"):
        LoginKey.generate().seal("bad name", login)
