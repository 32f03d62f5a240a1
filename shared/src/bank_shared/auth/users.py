"""The users who may log in: their role and an Argon2 hash of their password (pwdlib)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from bank_shared.contracts.actors import Actor, Role

HASHING = PasswordHash((Argon2Hasher(),))


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    password_hash: str

    @property
    def actor(self) -> Actor:
        return Actor(subject=self.username, role=self.role)


def hash_password(password: str) -> str:
    return HASHING.hash(password)


class Users:
    def __init__(self, users: list[User]) -> None:
        self._by_name = {user.username: user for user in users}
        # Checked when the name is unknown, so a wrong name costs as long as a wrong password
        # and the time of an answer does not tell which names exist.
        self._decoy = hash_password("not a password of anyone")

    @classmethod
    def load(cls, path: Path) -> Users:
        data = json.loads(path.read_text())
        return cls([User(u["username"], u["role"], u["password_hash"]) for u in data["users"]])

    def __contains__(self, username: str) -> bool:
        return username in self._by_name

    def authenticate(self, username: str, password: str) -> Actor | None:
        """The user's actor if the password is theirs, else None. CPU-bound (Argon2): call
        it from a thread."""
        user = self._by_name.get(username)
        if user is None:
            HASHING.verify(password, self._decoy)
            return None
        return user.actor if HASHING.verify(password, user.password_hash) else None
