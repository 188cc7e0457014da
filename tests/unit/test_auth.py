"""Principals files, token checks and the listen rules, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from seat_inventory.api.auth import (
    PrincipalsError,
    bearer_token,
    hash_token,
    load_principals,
)
from seat_inventory.api.principal import ADMIN, CLIENT
from seat_inventory.api.transport import (
    TransportError,
    insecure_bind_problem,
    is_loopback,
    server_credentials,
)
from seat_inventory.config import Settings
from seat_inventory.domain.errors import Unauthenticated

OLD = "old-token-0123456789"
NEW = "new-token-0123456789"


def write(tmp_path: Path, text: str, name: str = "principals.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_rotation_expiry_and_roles(tmp_path: Path) -> None:
    """A principal with two tokens is recognised by either until one expires; roles
    come through; an unknown token is not valid."""
    path = write(
        tmp_path,
        f"""
[[principals]]
name = "checkout"
roles = ["client"]
tokens = [{{hash = "{hash_token(OLD)}", expires = 2030-01-01T00:00:00Z}}, "{hash_token(NEW)}"]

[[principals]]
name = "ops"
roles = ["admin", "client"]
tokens = ["{hash_token("ops-token-0123456789")}"]
""",
    )
    auth = load_principals(path)
    before = 1_800_000_000.0  # 2027
    after = 1_900_000_000.0  # 2030-03
    assert auth.authenticate(OLD, now=before).name == "checkout"
    assert auth.authenticate(NEW, now=after).roles == frozenset({CLIENT})
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(OLD, now=after)
    with pytest.raises(Unauthenticated, match="not valid"):
        auth.authenticate("someone-else-0123456789", now=before)
    with pytest.raises(Unauthenticated, match="requires a bearer token"):
        auth.authenticate(None)
    assert auth.authenticate("ops-token-0123456789").has_role(ADMIN)


def test_json_files_work_like_toml(tmp_path: Path) -> None:
    """A .json principals file with an ISO expiry string is read the same way."""
    path = write(
        tmp_path,
        '{"principals": [{"name": "a", "roles": ["client"], "tokens": '
        f'[{{"hash": "{hash_token(NEW)}", "expires": "2030-01-01T00:00:00+00:00"}}]}}]}}',
        "principals.json",
    )
    assert load_principals(path).authenticate(NEW, now=1_800_000_000.0).name == "a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[principals]\n", "not valid TOML"),
        ("", "expected a list 'principals'"),
        ("principals = []\n", "no principals listed"),
        ('[[principals]]\nname = "a b"\nroles = ["client"]\ntokens = ["x"]\n', "name must be"),
        (
            '[[principals]]\nname = "anonymous"\nroles = ["client"]\ntokens = ["x"]\n',
            "reserved",
        ),
        ('[[principals]]\nname = "a"\nroles = ["root"]\ntokens = ["x"]\n', "roles must be"),
        ('[[principals]]\nname = "a"\nroles = ["client"]\ntokens = []\n', "tokens must be"),
        (
            '[[principals]]\nname = "a"\nroles = ["client"]\ntokens = ["hunter2-plaintext"]\n',
            "never as the token itself",
        ),
        (
            f'[[principals]]\nname = "a"\nroles = ["client"]\ntoken = ["{hash_token(NEW)}"]\n',
            "unknown key(s) token",
        ),
        (
            f'[[principals]]\nname = "a"\nroles = ["client"]\n'
            f'tokens = [{{hash = "{hash_token(NEW)}", expires = 2030-01-01T00:00:00}}]\n',
            "needs a UTC offset",
        ),
        (
            f'[[principals]]\nname = "a"\nroles = ["client"]\ntokens = ["{hash_token(NEW)}"]\n'
            f'[[principals]]\nname = "b"\nroles = ["client"]\ntokens = ["{hash_token(NEW)}"]\n',
            "listed more than once",
        ),
        (
            f'[[principals]]\nname = "a"\nroles = ["client"]\ntokens = ["{hash_token(NEW)}"]\n'
            f'[[principals]]\nname = "a"\nroles = ["admin"]\ntokens = ["{hash_token(OLD)}"]\n',
            "listed twice",
        ),
    ],
)
def test_bad_principals_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake in a principals file is a PrincipalsError naming the file and the
    problem, never echoing a plaintext token."""
    path = write(tmp_path, text)
    with pytest.raises(PrincipalsError) as error:
        load_principals(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert "hunter2" not in str(error.value)


def test_a_missing_principals_file_is_reported() -> None:
    """An unreadable path is a PrincipalsError that names it."""
    with pytest.raises(PrincipalsError, match=r"cannot read principals file /nonexistent/p\.toml"):
        load_principals("/nonexistent/p.toml")


def test_bearer_token_accepts_exactly_one_bearer_header() -> None:
    """The scheme is case-insensitive; no header, another scheme or two headers yield none."""
    assert bearer_token((("authorization", "Bearer abc"),)) == "abc"
    assert bearer_token((("x", "y"), ("authorization", "bearer  abc "))) == "abc"
    assert bearer_token(()) is None
    assert bearer_token((("authorization", "Basic abc"),)) is None
    assert bearer_token((("authorization", "Bearer a"), ("authorization", "Bearer b"))) is None


def test_only_loopback_addresses_may_be_served_without_authentication() -> None:
    """127.0.0.0/8, ::1 and localhost pass; 0.0.0.0, [::] and other names need
    principals or the explicit switch."""
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
        assert insecure_bind_problem(Settings(host=host)) is None
    for host in ("0.0.0.0", "::", "[::]", "10.0.0.5", "seats.internal"):
        assert not is_loopback(host), host
        assert "--allow-insecure-bind" in (insecure_bind_problem(Settings(host=host)) or "")
    assert insecure_bind_problem(Settings(host="0.0.0.0", principals_file="p.toml")) is None
    assert insecure_bind_problem(Settings(host="0.0.0.0", allow_insecure_bind=True)) is None


def test_tls_settings_mistakes_are_reported(tmp_path: Path) -> None:
    """A key without a certificate, an unreadable file and a non-PEM file each raise a
    TransportError naming the flag; no TLS settings mean no credentials."""
    assert server_credentials(Settings()) is None
    with pytest.raises(TransportError, match="both --tls-cert and --tls-key"):
        server_credentials(Settings(tls_key="k.pem"))
    with pytest.raises(TransportError, match=r"cannot read TLS key \(--tls-key\) /nope/k.pem"):
        server_credentials(Settings(tls_cert="/nope/c.pem", tls_key="/nope/k.pem"))
    junk = write(tmp_path, "not a certificate", "junk.pem")
    with pytest.raises(TransportError, match="is not a PEM file"):
        server_credentials(Settings(tls_cert=str(junk), tls_key=str(junk)))


def test_a_key_given_twice_in_a_json_file_is_refused(tmp_path: Path) -> None:
    """JSON keeps the last of two equal keys in silence (a second "roles" with admin in
    it would have won); the file is refused as TOML refuses the same mistake."""
    token_hash = hash_token(NEW)
    path = write(
        tmp_path,
        '{"principals": [{"name": "checkout", "roles": ["client"], '
        f'"tokens": ["{token_hash}"], "roles": ["admin", "client"]}}]}}',
        "principals.json",
    )
    twice = "not valid JSON: the key 'roles' appears twice in one object"
    with pytest.raises(PrincipalsError, match=twice):
        load_principals(path)
