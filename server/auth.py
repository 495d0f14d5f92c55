"""API keys: `Authorization: Bearer <key>` on `/solve` and `/v1/*` when keys are configured.

Keys come from `RSTAR_API_KEYS` (comma-separated `name:key`, or bare keys, named `key-1`, ...)
and/or `RSTAR_API_KEYS_FILE` (one `name:key` per line, `#` comments; in Kubernetes a mounted
Secret). A key is known by its name everywhere (metrics, logs, limits); the key itself is only
ever compared, in constant time, against every configured key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

ANONYMOUS = "anonymous"  # the caller's name when no keys are configured


def key_name(request: object) -> str:
    """The caller's key name, as the key check middleware left it on the request."""
    return getattr(getattr(request, "state", None), "api_key", None) or ANONYMOUS


class Unauthorized(Exception):
    """A missing or unknown API key (401)."""


class KeyConfigError(ValueError):
    """The configured keys cannot be used; the message says which entry and why."""


@dataclass(frozen=True)
class ApiKeys:
    keys: dict[str, bytes]  # name -> key

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @classmethod
    def load(cls, inline: str | None, file: str | None) -> ApiKeys:
        entries: list[tuple[str, str]] = []
        if inline:
            entries += [("RSTAR_API_KEYS", e) for e in inline.split(",") if e.strip()]
        if file:
            try:
                lines = Path(file).read_text(encoding="utf-8").splitlines()
            except OSError as e:
                raise KeyConfigError(f"RSTAR_API_KEYS_FILE={file}: {e.strerror}") from None
            entries += [
                (f"{file}:{i}", line)
                for i, line in enumerate(lines, 1)
                if line.strip() and not line.lstrip().startswith("#")
            ]
        keys: dict[str, bytes] = {}
        for n, (where, entry) in enumerate(entries, 1):
            name, sep, key = entry.strip().partition(":")
            if not sep:
                name, key = f"key-{n}", name
            name, key = name.strip(), key.strip()
            if len(key) < 16:
                raise KeyConfigError(f"{where}: an API key must have at least 16 characters")
            if name in keys:
                raise KeyConfigError(f"{where}: the key name {name!r} is used twice")
            keys[name] = key.encode()
        return cls(keys)

    def identify(self, authorization: str | None) -> str:
        """The caller's key name; raises Unauthorized for a missing or unknown key."""
        if not self.enabled:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing API key: send it as 'Authorization: Bearer <key>'")
        given = token.strip().encode()
        found = None
        for name, key in self.keys.items():  # every key, so the time says nothing of which
            if hmac.compare_digest(given, key):
                found = name
        if found is None:
            raise Unauthorized("unknown API key")
        return found
