"""The login material `make run` (and the test session) makes once: a token key pair and the
demo users (a teller, Alice, Bob) with random passwords, in files only their owner can read."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from bank_shared.auth.users import hash_password
from bank_shared.contracts.actors import TELLER, Role
from bank_shared.settings import AuthSettings

DEMO_USERS: dict[str, Role] = {TELLER: "teller", "alice": "customer", "bob": "customer"}


def _write(path: Path, data: bytes, mode: int) -> None:
    """Created with its mode from the start: never readable by others, even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)


def ensure_credentials(auth: AuthSettings) -> Path:
    """Make the key pair and the demo users unless they exist; return the demo logins file."""
    auth.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (auth.signing_key_file.exists() and auth.verifying_key_file.exists()):
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        _write(auth.signing_key_file, private, 0o600)
        # Public, but a service that runs as another user must read it (docs/security.md).
        _write(auth.verifying_key_file, public, 0o644)
    if not (auth.users_file.exists() and auth.logins_file.exists()):
        passwords = {name: secrets.token_urlsafe(12) for name in DEMO_USERS}
        users = [
            {"username": name, "role": role, "password_hash": hash_password(passwords[name])}
            for name, role in DEMO_USERS.items()
        ]
        _write(auth.users_file, json.dumps({"users": users}, indent=2).encode(), 0o600)
        logins = [
            {"username": name, "role": role, "password": passwords[name]}
            for name, role in DEMO_USERS.items()
        ]
        _write(auth.logins_file, json.dumps({"logins": logins}, indent=2).encode(), 0o600)
    return auth.logins_file


def demo_passwords(auth: AuthSettings) -> dict[str, str]:
    """Each demo user's password, from the logins file."""
    data = json.loads(auth.logins_file.read_text())
    return {login["username"]: login["password"] for login in data["logins"]}
