"""Access tokens and logins: a token issued verifies to its actor and every forgery is refused;
passwords are checked against Argon2 hashes; the login material is readable only by its owner."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from bank_deploy.credentials import DEMO_USERS, demo_passwords, ensure_credentials
from bank_shared.auth.material import (
    MissingLoginMaterialError,
    token_issuer,
    token_verifier,
    users,
)
from bank_shared.auth.tokens import InvalidTokenError, TokenIssuer, TokenVerifier
from bank_shared.contracts.actors import Actor
from bank_shared.settings import AuthSettings

CAROL = Actor(subject="carol", role="customer")
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> AuthSettings:
    """Login material as `make run` makes it, in a directory of this module's own."""
    settings = AuthSettings(dir=tmp_path_factory.mktemp("login") / "auth")
    ensure_credentials(settings)
    return settings


@pytest.fixture(scope="module")
def verifier(auth: AuthSettings) -> TokenVerifier:
    return token_verifier(auth)


@pytest.fixture(scope="module")
def issuer(auth: AuthSettings) -> TokenIssuer:
    return token_issuer(auth)


def claims(auth: AuthSettings, **changes: Any) -> dict[str, Any]:
    """A valid token's claims, with `changes` (a value of None leaves the claim out)."""
    valid: dict[str, Any] = {
        "sub": CAROL.subject,
        "role": CAROL.role,
        "iss": auth.issuer,
        "aud": auth.audience,
        "iat": NOW,
        "exp": NOW + timedelta(minutes=5),
    }
    merged = {**valid, **changes}
    return {name: value for name, value in merged.items() if value is not None}


def signed(auth: AuthSettings, payload: dict[str, Any]) -> str:
    """Signed with the bank's own key: only the claims can be wrong."""
    key = load_pem_private_key(auth.signing_key_file.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return jwt.encode(payload, key, algorithm="EdDSA")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refused(verifier: TokenVerifier, token: str) -> InvalidTokenError:
    with pytest.raises(InvalidTokenError) as caught:
        verifier.verify(token)
    return caught.value


# --- tokens ------------------------------------------------------------------------------------


def test_a_token_issued_verifies_to_its_actor(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    for actor in (CAROL, Actor(subject="teller", role="teller")):
        assert verifier.verify(issuer.issue(actor, NOW)) == actor


def test_a_token_carries_the_claims_the_verifier_requires(
    auth: AuthSettings, issuer: TokenIssuer
) -> None:
    token = issuer.issue(CAROL, NOW)

    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    payload = jwt.decode(token, options={"verify_signature": False})
    assert (payload["sub"], payload["role"], payload["iss"], payload["aud"]) == (
        "carol",
        "customer",
        auth.issuer,
        auth.audience,
    )
    assert payload["exp"] - payload["iat"] == auth.token_minutes * 60


def test_an_expired_token_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    long_ago = NOW - issuer.lifetime - timedelta(minutes=1)

    error = refused(verifier, issuer.issue(CAROL, long_ago))

    assert "log in again" in str(error)


def test_a_token_signed_with_another_key_is_refused(
    auth: AuthSettings, verifier: TokenVerifier
) -> None:
    other = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    forger = TokenIssuer(
        other, issuer=auth.issuer, audience=auth.audience, lifetime=timedelta(minutes=5)
    )

    refused(verifier, forger.issue(CAROL, NOW))


def test_an_unsigned_token_alg_none_is_refused(auth: AuthSettings, verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(auth), "", algorithm="none")

    assert jwt.get_unverified_header(token)["alg"] == "none"
    refused(verifier, token)


@pytest.mark.parametrize("secret", ["pem", "raw"])
def test_hs256_with_the_public_key_as_secret_is_refused(
    auth: AuthSettings, verifier: TokenVerifier, secret: str
) -> None:
    """Algorithm confusion: the public key is no secret, so an HMAC made with it proves
    nothing. Built by hand, as an attacker would (PyJWT itself refuses to make one)."""
    pem = auth.verifying_key_file.read_bytes()
    public = load_pem_public_key(pem)
    key = pem if secret == "pem" else public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    payload = claims(auth, iat=int(NOW.timestamp()), exp=int(NOW.timestamp()) + 300)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()

    refused(verifier, f"{header}.{body}.{b64(signature)}")


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "another-audience"},
        {"iss": "another-issuer"},
        {"exp": None},
        {"iat": None},
        {"sub": None},
        {"aud": None},
        {"iss": None},
        {"role": "admin"},
        {"role": None},
        {"sub": "Not A Login Name"},
    ],
    ids=[
        "wrong aud",
        "wrong iss",
        "no exp",
        "no iat",
        "no sub",
        "no aud",
        "no iss",
        "unknown role",
        "no role",
        "bad subject",
    ],
)
def test_a_token_with_wrong_or_missing_claims_is_refused(
    auth: AuthSettings, verifier: TokenVerifier, changes: dict[str, Any]
) -> None:
    refused(verifier, signed(auth, claims(auth, **changes)))


def test_a_tampered_payload_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    """Carol's genuine token, her role changed to teller, the signature kept."""
    header, payload, signature = issuer.issue(CAROL, NOW).split(".")
    claims_ = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    promoted = b64(json.dumps({**claims_, "role": "teller"}).encode())

    refused(verifier, f"{header}.{promoted}.{signature}")


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c", "a.b"])
def test_garbage_is_refused(verifier: TokenVerifier, token: str) -> None:
    refused(verifier, token)


# --- users -------------------------------------------------------------------------------------


def test_the_demo_users_log_in_with_their_passwords_only(auth: AuthSettings) -> None:
    known = users(auth)
    passwords = demo_passwords(auth)

    assert set(passwords) == set(DEMO_USERS)
    for name, role in DEMO_USERS.items():
        assert known.authenticate(name, passwords[name]) == Actor(subject=name, role=role)
        assert known.authenticate(name, passwords[name] + "x") is None
    assert known.authenticate("alice", passwords["bob"]) is None


def test_an_unknown_user_does_not_log_in(auth: AuthSettings) -> None:
    known = users(auth)

    assert "mallory" not in known
    assert known.authenticate("mallory", demo_passwords(auth)["alice"]) is None
    assert known.authenticate("", "") is None


def test_the_users_file_holds_hashes_never_the_passwords(auth: AuthSettings) -> None:
    text = auth.users_file.read_text()
    stored = {u["username"]: u["password_hash"] for u in json.loads(text)["users"]}

    for name, password in demo_passwords(auth).items():
        assert password not in text
        assert stored[name].startswith("$argon2")


# --- the files -----------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_secrets_are_readable_by_their_owner_only(auth: AuthSettings) -> None:
    assert mode(auth.dir) == 0o700
    for secret in (auth.signing_key_file, auth.users_file, auth.logins_file):
        assert mode(secret) == 0o600, secret
    # The public key may be read by services running as other users, never written.
    assert mode(auth.verifying_key_file) & 0o022 == 0


def test_making_the_material_again_keeps_the_keys_and_passwords(auth: AuthSettings) -> None:
    key, passwords = auth.signing_key_file.read_bytes(), demo_passwords(auth)

    ensure_credentials(auth)

    assert (auth.signing_key_file.read_bytes(), demo_passwords(auth)) == (key, passwords)


def test_missing_material_says_how_to_make_it(tmp_path: Path) -> None:
    nowhere = AuthSettings(dir=tmp_path / "none")

    for load in (token_issuer, token_verifier, users):
        with pytest.raises(MissingLoginMaterialError, match="BANK_AUTH_DIR"):
            load(nowhere)
