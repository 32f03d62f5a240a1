"""The login material of BANK_AUTH_DIR, read at start-up with errors that say how to make it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bank_shared.auth.tokens import TokenIssuer, TokenVerifier
from bank_shared.auth.users import Users
from bank_shared.settings import AuthSettings


class MissingLoginMaterialError(RuntimeError):
    pass


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise MissingLoginMaterialError(
            f"cannot read the {what} at {path} ({error.strerror}). `make run` writes it"
            " under .bank/auth; elsewhere set BANK_AUTH_DIR to the directory that holds it"
            " (docs/security.md)."
        ) from None


def token_verifier(auth: AuthSettings) -> TokenVerifier:
    return TokenVerifier(
        _read(auth.verifying_key_file, "token verifying key"),
        issuer=auth.issuer,
        audience=auth.audience,
    )


def token_issuer(auth: AuthSettings) -> TokenIssuer:
    return TokenIssuer(
        _read(auth.signing_key_file, "token signing key"),
        issuer=auth.issuer,
        audience=auth.audience,
        lifetime=timedelta(minutes=auth.token_minutes),
    )


def users(auth: AuthSettings) -> Users:
    _read(auth.users_file, "users file")
    return Users.load(auth.users_file)
