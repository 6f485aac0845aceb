"""The NATS connection against real nats-server processes on free 127.0.0.1 ports.

Every way to authenticate (none, token, user/password, nkey, creds) and TLS (CA, mTLS, hostname,
handshake-first) connects; every way to get it wrong ends in a ConnectError that says what to
fix, within seconds and without a credential in the message or in any log record; a lost server
ends in ConnectionLostError (exit code 3 through the CLI); connection events reach ``emit``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
import pytest
import trustme
from jetplug.connection import Connection, redact_url
from jetplug.embedded import EmbeddedServer, free_port
from jetplug.errors import ConnectError, ConnectionLostError
from jetplug.events import ConnectionChanged, Event
from jetplug.settings import AuthSettings, NatsSettings, TlsSettings
from jetplug.testing import wait_until

TOKEN = "tok-3f9a1c-s3cret"
BAD_TOKEN = "tok-bad-77d2e0-s3cret"
USER = "alice"
PASSWORD = "pw-8b41e2-s3cret"
BAD_PASSWORD = "pw-bad-c09f13-s3cret"
#: every value that must never show up; seeds of generated keys are added as they are made
SECRETS: set[str] = {TOKEN, BAD_TOKEN, PASSWORD, BAD_PASSWORD}

#: a failed connect must be explained within this many seconds
FAIL_FAST = 5.0


# --- keys, JWTs, certificates ---------------------------------------------------------------------


def new_nkey(prefix: int) -> tuple[str, str, nkeys.KeyPair]:
    """(seed, public key, key pair) of a fresh nkey; the seed is registered as a secret."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    pair = nkeys.from_seed(bytearray(seed))
    SECRETS.add(seed.decode())
    return seed.decode(), pair.public_key.decode(), pair


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(signer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT (``ed25519-nkey``) for ``subject`` issued by ``signer``."""
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": signer.public_key.decode(),
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = signer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64(signature)}"


def creds_text(user_jwt: str, user_seed: str) -> str:
    """The standard ``.creds`` file layout (as ``nsc`` writes it)."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user_seed}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


UNLIMITED = {
    key: -1
    for key in (
        "subs",
        "data",
        "payload",
        "imports",
        "exports",
        "conn",
        "leaf",
        "mem_storage",
        "disk_storage",
        "streams",
        "consumer",
    )
}


@dataclass
class Operator:
    """A decentralized-auth setup: operator, system account, one account with JetStream."""

    server_config: str
    creds_file: Path
    foreign_creds_file: Path  # a user of an account the server does not know


def make_operator(where: Path) -> Operator:
    _, op_pub, op = new_nkey(nkeys.PREFIX_BYTE_OPERATOR)
    _, sys_pub, _ = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    _, acc_pub, acc = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    user_seed, user_pub, _ = new_nkey(nkeys.PREFIX_BYTE_USER)
    operator_jwt = sign_jwt(op, op_pub, "test-operator", {"type": "operator"})
    sys_jwt = sign_jwt(op, sys_pub, "SYS", {"type": "account"})
    account_jwt = sign_jwt(
        op, acc_pub, "app", {"type": "account", "limits": {**UNLIMITED, "wildcards": True}}
    )
    user_claims = {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
    user_jwt = sign_jwt(acc, user_pub, "app-user", user_claims)
    creds = where / "app-user.creds"
    creds.write_text(creds_text(user_jwt, user_seed))
    # the same kind of user, but under an account the operator never signed for this server
    _, _, stranger_acc = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    stranger_seed, stranger_pub, _ = new_nkey(nkeys.PREFIX_BYTE_USER)
    stranger_jwt = sign_jwt(stranger_acc, stranger_pub, "stranger", user_claims)
    foreign = where / "stranger.creds"
    foreign.write_text(creds_text(stranger_jwt, stranger_seed))
    config = (
        f"operator: {operator_jwt}\n"
        f"system_account: {sys_pub}\n"
        "resolver: MEMORY\n"
        "resolver_preload: {\n"
        f"  {sys_pub}: {sys_jwt}\n"
        f"  {acc_pub}: {account_jwt}\n"
        "}\n"
    )
    return Operator(config, creds, foreign)


@dataclass
class Pki:
    """Certificate files: one CA for the servers and clients, one stranger CA."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str
    other_client_cert: str
    other_client_key: str
    #: a server certificate of the right CA for "nats.example.com" only
    foreign_cert: str
    foreign_key: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    where = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()

    def write(name: str, blob: Any) -> str:
        path = where / name
        blob.write_to_path(str(path))
        return str(path)

    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.com")
    stranger = other.issue_cert("client@example.com")
    foreign = ca.issue_cert("nats.example.com")
    return Pki(
        ca=write("ca.pem", ca.cert_pem),
        server_cert=write("server.pem", server.cert_chain_pems[0]),
        server_key=write("server.key", server.private_key_pem),
        client_cert=write("client.pem", client.cert_chain_pems[0]),
        client_key=write("client.key", client.private_key_pem),
        other_ca=write("other-ca.pem", other.cert_pem),
        other_client_cert=write("other-client.pem", stranger.cert_chain_pems[0]),
        other_client_key=write("other-client.key", stranger.private_key_pem),
        foreign_cert=write("foreign.pem", foreign.cert_chain_pems[0]),
        foreign_key=write("foreign.key", foreign.private_key_pem),
    )


def tls_block(cert: str, key: str, ca: str, *, verify: bool, handshake_first: bool = False) -> str:
    lines = [
        "tls {",
        f'  cert_file: "{cert}"',
        f'  key_file: "{key}"',
        f'  ca_file: "{ca}"',
        f"  verify: {'true' if verify else 'false'}",
        "  timeout: 2",
    ]
    if handshake_first:
        lines.append("  handshake_first: true")
    return "\n".join([*lines, "}"])


# --- servers (module scoped: each is a real nats-server process, stopped by pid) ------------------


def _serve(
    tmp_path_factory: pytest.TempPathFactory, name: str, extra: str
) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(store_dir=tmp_path_factory.mktemp(name), extra_config=extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    yield from _serve(tmp_path_factory, "plain", "")


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    yield from _serve(tmp_path_factory, "token", f'authorization {{ token: "{TOKEN}" }}')


@pytest.fixture(scope="module")
def user_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    users = f'authorization {{ users = [ {{ user: "{USER}", password: "{PASSWORD}" }} ] }}'
    yield from _serve(tmp_path_factory, "user", users)


@pytest.fixture(scope="module")
def nkey_seeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(public key the server knows, its seed file, a seed file of an unknown nkey user)."""
    where = tmp_path_factory.mktemp("nkeys")
    seed, public, _ = new_nkey(nkeys.PREFIX_BYTE_USER)
    unknown_seed, _, _ = new_nkey(nkeys.PREFIX_BYTE_USER)
    (where / "user.nk").write_text(seed + "\n")
    (where / "unknown.nk").write_text(unknown_seed + "\n")
    return public, str(where / "user.nk"), str(where / "unknown.nk")


@pytest.fixture(scope="module")
def nkey_server(
    tmp_path_factory: pytest.TempPathFactory, nkey_seeds: tuple[str, str, str]
) -> Iterator[EmbeddedServer]:
    users = f"authorization {{ users = [ {{ nkey: {nkey_seeds[0]} }} ] }}"
    yield from _serve(tmp_path_factory, "nkey", users)


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Operator:
    return make_operator(tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="module")
def creds_server(
    tmp_path_factory: pytest.TempPathFactory, operator: Operator
) -> Iterator[EmbeddedServer]:
    yield from _serve(tmp_path_factory, "creds", operator.server_config)


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[EmbeddedServer]:
    block = tls_block(pki.server_cert, pki.server_key, pki.ca, verify=True)
    yield from _serve(tmp_path_factory, "mtls", block)


@pytest.fixture(scope="module")
def foreign_name_server(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[EmbeddedServer]:
    """TLS (no client certificates) with a certificate for nats.example.com, not 127.0.0.1."""
    block = tls_block(pki.foreign_cert, pki.foreign_key, pki.ca, verify=False)
    yield from _serve(tmp_path_factory, "foreign", block)


@pytest.fixture(scope="module")
def tls_first_server(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[EmbeddedServer]:
    """mTLS where the client must start TLS before the server's INFO."""
    block = tls_block(pki.server_cert, pki.server_key, pki.ca, verify=True, handshake_first=True)
    yield from _serve(tmp_path_factory, "tlsfirst", block)


# --- helpers --------------------------------------------------------------------------------------


def settings(url: str, **kw: Any) -> NatsSettings:
    base: dict[str, Any] = {
        "connect_timeout": 2.0,
        "reconnect_wait": 0.1,
        "reconnect_jitter": 0.0,
    }
    base.update(kw)
    return NatsSettings(servers=[url], **base)


def mtls(pki: Pki, **kw: Any) -> TlsSettings:
    values = {"ca": pki.ca, "cert": pki.client_cert, "key": pki.client_key, **kw}
    return TlsSettings(**values)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a credential leaked into: {text!r}"


def assert_logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    """No credential in any record: message, arguments, extra fields or traceback."""
    texts = [caplog.text]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), repr(record.__dict__)]
    assert_no_secret(*texts)


async def connect_ok(config: NatsSettings) -> None:
    """Connect, prove a JetStream round trip, see the "connected" event, close."""
    events: list[Event] = []
    conn = Connection(config, list(config.servers), events.append)
    nc = await conn.connect()
    try:
        assert nc.is_connected
        info = await nc.jetstream().account_info()
        assert info.limits.max_streams != 0
        assert [e.state for e in events if isinstance(e, ConnectionChanged)] == ["connected"]
        assert_no_secret(*(repr(e) for e in events))
    finally:
        await conn.close()
    assert conn.lost is not None and not conn.lost.done()


async def connect_fails(
    config: NatsSettings, caplog: pytest.LogCaptureFixture, *expected: str
) -> str:
    """The ConnectError message, after checking it is fast, actionable and secret-free."""
    caplog.set_level(logging.DEBUG)
    events: list[Event] = []
    conn = Connection(config, list(config.servers), events.append)
    started = time.monotonic()
    with pytest.raises(ConnectError) as failed:
        await conn.connect()
    elapsed = time.monotonic() - started
    message = str(failed.value)
    assert elapsed < FAIL_FAST, f"took {elapsed:.1f}s: {message}"
    for words in expected:
        assert words in message, f"{words!r} not in {message!r}"
    assert failed.value.exit_code == 3
    assert conn.nc is None
    assert events == []
    assert_no_secret(message)
    assert_logs_clean(caplog)
    return message


# --- connecting -----------------------------------------------------------------------------------


async def test_connects_without_auth(plain_server: EmbeddedServer) -> None:
    await connect_ok(settings(plain_server.url))


async def test_connects_with_token(token_server: EmbeddedServer) -> None:
    await connect_ok(settings(token_server.url, auth=AuthSettings(token=TOKEN)))


async def test_connects_with_user_and_password(user_server: EmbeddedServer) -> None:
    await connect_ok(settings(user_server.url, auth=AuthSettings(user=USER, password=PASSWORD)))


async def test_connects_with_nkey_seed_file(
    nkey_server: EmbeddedServer, nkey_seeds: tuple[str, str, str]
) -> None:
    await connect_ok(settings(nkey_server.url, auth=AuthSettings(nkey_seed_file=nkey_seeds[1])))


async def test_connects_with_creds_file(creds_server: EmbeddedServer, operator: Operator) -> None:
    # decentralized auth: operator JWT in the server, account JWT preloaded, user .creds file;
    # the account JWT grants JetStream, which connect_ok exercises
    config = settings(creds_server.url, auth=AuthSettings(creds_file=str(operator.creds_file)))
    await connect_ok(config)


async def test_connects_with_mutual_tls(mtls_server: EmbeddedServer, pki: Pki) -> None:
    await connect_ok(settings(mtls_server.url, tls=mtls(pki)))


async def test_connects_with_tls_handshake_first(
    tls_first_server: EmbeddedServer, pki: Pki
) -> None:
    await connect_ok(settings(tls_first_server.url, tls=mtls(pki, handshake_first=True)))


async def test_tls_hostname_checks_the_certificate_against_another_name(
    foreign_name_server: EmbeddedServer, mtls_server: EmbeddedServer, pki: Pki
) -> None:
    # the certificate names nats.example.com; the URL says 127.0.0.1
    await connect_ok(
        settings(foreign_name_server.url, tls=TlsSettings(ca=pki.ca, hostname="nats.example.com"))
    )
    await connect_ok(settings(mtls_server.url, tls=mtls(pki, hostname="localhost")))


async def test_credentials_in_the_url_are_used_but_never_shown(
    user_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"nats://{USER}:{PASSWORD}@127.0.0.1:{user_server.port}"
    events: list[Event] = []
    conn = Connection(settings(url), [url], events.append)
    await conn.connect()
    try:
        (first,) = events
        assert isinstance(first, ConnectionChanged) and first.state == "connected"
        assert first.detail == user_server.url
    finally:
        await conn.close()
    assert_no_secret(*(repr(e) for e in events))
    assert_logs_clean(caplog)


# --- failing fast, with a message that says what to fix -------------------------------------------


async def test_wrong_ca(
    mtls_server: EmbeddedServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    message = await connect_fails(
        settings(mtls_server.url, tls=mtls(pki, ca=pki.other_ca)),
        caplog,
        "not trusted by",
        pki.other_ca,
        "set nats.tls.ca",
    )
    assert "127.0.0.1" in message


async def test_tls_server_without_any_tls_config(
    mtls_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    # nats-py upgrades to TLS on its own when the server requires it, with the system trust store
    await connect_fails(
        settings(mtls_server.url), caplog, "not trusted by the system trust store", "nats.tls.ca"
    )


async def test_hostname_mismatch_by_url(
    foreign_name_server: EmbeddedServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    await connect_fails(
        settings(foreign_name_server.url, tls=TlsSettings(ca=pki.ca)),
        caplog,
        "not valid for this host name",
        "nats.tls.hostname",
    )


async def test_hostname_mismatch_by_setting(
    mtls_server: EmbeddedServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    await connect_fails(
        settings(mtls_server.url, tls=mtls(pki, hostname="nats.example.com")),
        caplog,
        "not valid for this host name",
        "nats.tls.hostname",
    )


@pytest.mark.parametrize("handshake_first", [False, True], ids=["info-first", "tls-first"])
async def test_missing_client_certificate(
    mtls_server: EmbeddedServer,
    tls_first_server: EmbeddedServer,
    pki: Pki,
    handshake_first: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = tls_first_server if handshake_first else mtls_server
    config = settings(server.url, tls=TlsSettings(ca=pki.ca, handshake_first=handshake_first))
    # TLS 1.3 lets the client finish before the server checks for a certificate, so the refusal
    # arrives as an alert, a reset or a broken pipe depending on timing: try several times
    for _ in range(5):
        await connect_fails(config, caplog, "requires a client certificate", "nats.tls.cert")


@pytest.mark.parametrize("handshake_first", [False, True], ids=["info-first", "tls-first"])
async def test_client_certificate_from_another_ca(
    mtls_server: EmbeddedServer,
    tls_first_server: EmbeddedServer,
    pki: Pki,
    handshake_first: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = tls_first_server if handshake_first else mtls_server
    tls = mtls(
        pki, cert=pki.other_client_cert, key=pki.other_client_key, handshake_first=handshake_first
    )
    for _ in range(5):
        message = await connect_fails(settings(server.url, tls=tls), caplog, "nats.tls.cert")
        assert "client certificate" in message
        assert "does not trust" in message or "rejected" in message


async def test_tls_first_server_with_a_client_that_waits_for_info(
    tls_first_server: EmbeddedServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    await connect_fails(
        settings(tls_first_server.url, tls=mtls(pki)), caplog, "nats.tls.handshake_first = true"
    )


async def test_tls_first_client_against_a_plain_server(
    plain_server: EmbeddedServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    await connect_fails(
        settings(plain_server.url, tls=TlsSettings(ca=pki.ca, handshake_first=True)),
        caplog,
        "did not answer in TLS",
        "nats.tls.handshake_first",
    )


async def test_bad_token(token_server: EmbeddedServer, caplog: pytest.LogCaptureFixture) -> None:
    await connect_fails(
        settings(token_server.url, auth=AuthSettings(token=BAD_TOKEN)),
        caplog,
        "authorization failed",
        "the token was rejected",
        "nats.auth.token",
    )


async def test_missing_credentials(
    token_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    await connect_fails(
        settings(token_server.url), caplog, "requires authentication", "[nats.auth]"
    )


async def test_bad_password(user_server: EmbeddedServer, caplog: pytest.LogCaptureFixture) -> None:
    await connect_fails(
        settings(user_server.url, auth=AuthSettings(user=USER, password=BAD_PASSWORD)),
        caplog,
        "authorization failed",
        "nats.auth.user and password",
    )


async def test_bad_password_in_the_url_is_not_shown(
    user_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"nats://{USER}:{BAD_PASSWORD}@127.0.0.1:{user_server.port}"
    message = await connect_fails(settings(url), caplog, "authorization failed")
    assert f"nats://127.0.0.1:{user_server.port}" in message


async def test_unknown_nkey(
    nkey_server: EmbeddedServer, nkey_seeds: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    await connect_fails(
        settings(nkey_server.url, auth=AuthSettings(nkey_seed_file=nkey_seeds[2])),
        caplog,
        "the nkey was rejected",
        "nats.auth.nkey_seed_file",
    )


async def test_creds_of_an_unknown_account(
    creds_server: EmbeddedServer, operator: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    await connect_fails(
        settings(creds_server.url, auth=AuthSettings(creds_file=str(operator.foreign_creds_file))),
        caplog,
        "the credentials were rejected",
        "nats.auth.creds_file",
    )


async def test_nothing_listening(caplog: pytest.LogCaptureFixture) -> None:
    # the default connect_timeout (5 s): a refused connection must not wait for it
    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    await connect_fails(
        NatsSettings(servers=[url]), caplog, "nothing is listening at", url, "nats.servers"
    )
    assert time.monotonic() - started < 1.5


async def test_every_server_is_tried_and_every_failure_named(
    token_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    config = NatsSettings(servers=[dead, token_server.url], auth=AuthSettings(token=BAD_TOKEN))
    message = await connect_fails(config, caplog, "nothing is listening at", "token was rejected")
    assert dead in message and token_server.url in message


@pytest.mark.parametrize(
    ("tls", "key"),
    [
        ({"cert": "/nonexistent/client.pem", "key": "KEY"}, "nats.tls.cert"),
        ({"cert": "CERT", "key": "/nonexistent/client.key"}, "nats.tls.key"),
        ({"ca": "/nonexistent/ca.pem"}, "nats.tls.ca"),
    ],
    ids=["cert", "key", "ca"],
)
async def test_missing_tls_files_are_named(
    tls: dict[str, str], key: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    real = {"CERT": pki.client_cert, "KEY": pki.client_key}
    values: dict[str, Any] = {k: real.get(v, v) for k, v in tls.items()}
    url = f"nats://127.0.0.1:{free_port()}"  # never reached: files are checked first
    await connect_fails(
        settings(url, tls=TlsSettings(**values)), caplog, f"{key}: file not found: /nonexistent/"
    )


@pytest.mark.parametrize(
    ("auth", "key"),
    [
        ({"nkey_seed_file": "/nonexistent/user.nk"}, "nats.auth.nkey_seed_file"),
        ({"creds_file": "/nonexistent/user.creds"}, "nats.auth.creds_file"),
    ],
    ids=["nkey", "creds"],
)
async def test_missing_auth_files_are_named(
    auth: dict[str, str], key: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    await connect_fails(
        settings(url, auth=AuthSettings(**auth)), caplog, f"{key}: file not found: /nonexistent/"
    )


async def test_cert_without_key(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    await connect_fails(
        settings(url, tls=TlsSettings(ca=pki.ca, cert=pki.client_cert)),
        caplog,
        "set both cert and key",
    )


@pytest.mark.parametrize(
    ("auth", "named"),
    [
        ({"token": TOKEN, "user": USER, "password": PASSWORD}, "token and user/password"),
        (
            {"user": USER, "password": PASSWORD, "creds_file": "x.creds"},
            "user/password and creds_file",
        ),
        ({"token": TOKEN, "nkey_seed_file": "user.nk"}, "token and nkey_seed_file"),
    ],
    ids=["token+user", "user+creds", "token+nkey"],
)
async def test_two_auth_methods_at_once(
    auth: dict[str, str], named: str, token_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    await connect_fails(
        settings(token_server.url, auth=AuthSettings(**auth)),
        caplog,
        "nats.auth: choose one way to authenticate",
        named,
    )


# --- redaction ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"nats://{USER}:{PASSWORD}@127.0.0.1:4222", "nats://127.0.0.1:4222"),
        (f"tls://{TOKEN}@nats.example.com:4443", "tls://nats.example.com:4443"),
        (f"{USER}:{PASSWORD}@127.0.0.1:4222", "nats://127.0.0.1:4222"),
        (f"nats://{USER}:p@ss{PASSWORD}@127.0.0.1:4222", "nats://127.0.0.1:4222"),
        (f"nats://{USER}:{PASSWORD}@[::1]:4222", "nats://[::1]:4222"),
        (f"ws://{USER}:{PASSWORD}@127.0.0.1:8080/nats", "ws://127.0.0.1:8080/nats"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ],
)
def test_redact_url_strips_user_info(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert_no_secret(redact_url(url))


# --- losing the server ----------------------------------------------------------------------------


def states(events: list[Event]) -> list[str]:
    return [e.state for e in events if isinstance(e, ConnectionChanged)]


async def test_lost_when_reconnect_attempts_are_exhausted(fresh_server: EmbeddedServer) -> None:
    events: list[Event] = []
    config = settings(fresh_server.url, reconnect_attempts=2, reconnect_wait=0.1)
    conn = Connection(config, [fresh_server.url], events.append)
    await conn.connect()
    assert conn.lost is not None
    started = time.monotonic()
    fresh_server.kill()
    error = await asyncio.wait_for(conn.lost, timeout=FAIL_FAST)
    assert time.monotonic() - started < FAIL_FAST
    assert isinstance(error, ConnectionLostError) and error.exit_code == 3
    assert "gave up after 2 reconnect attempts (nats.reconnect_attempts)" in str(error)
    # the cause of the last attempt, not nats-py's final "no servers available"
    assert "last error: ConnectionRefusedError" in str(error)
    assert "restart" in str(error)
    seen = states(events)
    assert seen[0] == "connected" and "disconnected" in seen and seen[-1] == "closed"
    assert seen.index("disconnected") < seen.index("closed")
    await conn.close()


async def test_lost_at_once_when_reconnect_is_off(fresh_server: EmbeddedServer) -> None:
    # nats-py reads max_reconnect_attempts=0 as "no limit"; jetplug's 0 means "do not reconnect"
    events: list[Event] = []
    conn = Connection(
        settings(fresh_server.url, reconnect_attempts=0), [fresh_server.url], events.append
    )
    await conn.connect()
    assert conn.lost is not None
    fresh_server.kill()
    error = await asyncio.wait_for(conn.lost, timeout=FAIL_FAST)
    assert "reconnecting is off (nats.reconnect_attempts = 0)" in str(error)
    assert "last error: UnexpectedEOF" in str(error)
    assert states(events)[-1] == "closed"
    await conn.close()


async def test_disconnected_then_reconnected_events_across_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = EmbeddedServer(
        store_dir=tmp_path / "nats", extra_config=f'authorization {{ token: "{TOKEN}" }}'
    )
    server.start()
    try:
        events: list[Event] = []
        config = settings(server.url, reconnect_attempts=-1, auth=AuthSettings(token=TOKEN))
        conn = Connection(config, [server.url], events.append)
        calls: list[int] = []
        conn.on_reconnect.append(lambda: calls.append(conn.generation))
        nc = await conn.connect()
        server.kill()
        await wait_until(lambda: "disconnected" in states(events), timeout=FAIL_FAST)
        assert not conn.reconnected.is_set()
        server.restart()  # same port, same store
        await wait_until(lambda: "reconnected" in states(events), timeout=FAIL_FAST)
        assert [s for s in states(events) if s != "error"] == [
            "connected",
            "disconnected",
            "reconnected",
        ]
        # the EOF itself is reported too, as an "error" event with a secret-free detail
        errors = [e for e in events if isinstance(e, ConnectionChanged) and e.state == "error"]
        assert errors and errors[0].detail.startswith("UnexpectedEOF")
        assert conn.generation == 1 and calls == [1] and conn.reconnected.is_set()
        await nc.flush(timeout=2)
        assert conn.lost is not None and not conn.lost.done()
        await conn.close()
        assert states(events)[-1] == "closed"
        assert not conn.lost.done()  # closing on purpose is not a lost connection
        for event in events:
            assert isinstance(event, ConnectionChanged)
            if event.state in ("connected", "disconnected", "reconnected"):
                assert event.detail == server.url
        assert_no_secret(*(repr(e) for e in events))
        assert_logs_clean(caplog)
    finally:
        server.stop()


async def test_lame_duck_mode_reaches_emit(fresh_server: EmbeddedServer) -> None:
    events: list[Event] = []
    conn = Connection(settings(fresh_server.url), [fresh_server.url], events.append)
    await conn.connect()
    try:
        assert fresh_server.pid is not None
        os.kill(fresh_server.pid, signal.SIGUSR2)  # nats-server: enter lame duck mode
        await wait_until(lambda: "lame_duck" in states(events), timeout=FAIL_FAST)
        lame = [e for e in events if isinstance(e, ConnectionChanged) and e.state == "lame_duck"]
        assert lame[0].detail == fresh_server.url
    finally:
        await conn.close()
        fresh_server.kill()  # a server in lame duck mode takes its time over SIGTERM


async def test_cli_run_exits_3_when_the_server_is_lost(tmp_path: Path) -> None:
    server = EmbeddedServer(
        store_dir=tmp_path / "nats", extra_config=f'authorization {{ token: "{TOKEN}" }}'
    )
    server.start()
    config = tmp_path / "jetplug.toml"
    config.write_text(
        "[host]\n"
        f'data_dir = "{tmp_path / "data"}"\n'
        'plugins = ["log_events"]\n'
        "[nats]\n"
        f'servers = ["{server.url}"]\n'
        "reconnect_attempts = 1\n"
        "reconnect_wait = 0.1\n"
        "reconnect_jitter = 0\n"
        "[nats.auth]\n"
        f'token = "{TOKEN}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETPLUG_")}
    jetplug = Path(sys.executable).with_name("jetplug")
    proc = await asyncio.create_subprocess_exec(
        str(jetplug),
        "run",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stderr, stdout = proc.stderr, proc.stdout
        assert stderr is not None and stdout is not None
        lines: list[str] = []

        async def running() -> bool:
            line = (await asyncio.wait_for(stderr.readline(), 15)).decode()
            assert line, "jetplug run ended before it was running:\n" + "".join(lines)
            lines.append(line)
            return "jetplug is running" in line

        await wait_until(running, timeout=20)
        server.kill()
        code = await asyncio.wait_for(proc.wait(), timeout=15)
        err = "".join(lines) + (await stderr.read()).decode()
        out = (await stdout.read()).decode()
        assert code == 3, err
        assert "Error: lost the connection to NATS and gave up after 1 reconnect attempts" in err
        assert err.rstrip().splitlines()[-1].startswith("Error: lost the connection to NATS")
        assert "Traceback" not in err
        assert "connection disconnected" in err  # the event reached the log_events plugin
        assert_no_secret(err, out)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.stop()
