"""API keys for ``medtune serve --api``: where they come from, how a request proves one, when none is allowed.

Keys come from ``$MEDTUNE_API_KEYS`` (comma-separated) and ``serve.api_keys_file`` (one a line). With no
key the API is open, which is refused unless it is bound to a loopback address: an open medical model on
a public port is a liability nobody should get by leaving a variable unset. Keys never reach a log; a
request is identified by the key's position (``key-2``) instead.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from medtune.config import ConfigError, ServeConfig

logger = logging.getLogger(__name__)

API_KEYS_ENV = "MEDTUNE_API_KEYS"
ANONYMOUS = "anonymous"


def load_api_keys(serve: ServeConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every configured key, from the environment and the keys file, without duplicates."""
    environ = os.environ if environ is None else environ
    keys = [k.strip() for k in environ.get(API_KEYS_ENV, "").split(",")]
    if serve.api_keys_file:
        path = Path(serve.api_keys_file)
        if not path.is_file():
            raise ConfigError(f"serve.api_keys_file: {path} does not exist")
        lines = path.read_text(encoding="utf-8").splitlines()
        keys += [line.strip() for line in lines if not line.lstrip().startswith("#")]
    return list(dict.fromkeys(k for k in keys if k))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(host: str, keys: Sequence[str]) -> None:
    """Refuse to serve without keys on anything but loopback."""
    if not keys and not is_loopback(host):
        raise ConfigError(
            f"serve.host={host} is reachable from other machines but no API key is set: put keys in "
            f"${API_KEYS_ENV} (comma-separated) or serve.api_keys_file, or bind serve.host=127.0.0.1"
        )


class KeyCheck:
    """Tells which key a request's ``Authorization: Bearer ...`` header carries, in constant time."""

    def __init__(self, keys: Sequence[str]):
        self._keys = [k.encode() for k in keys]

    @property
    def open(self) -> bool:
        return not self._keys

    def identify(self, authorization: str | None) -> str | None:
        """``key-N`` for the N-th key, ``anonymous`` when no key is configured, None when refused."""
        if self.open:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        presented = token.strip().encode() if scheme.lower() == "bearer" else b""
        match = None
        # Every key is compared, each with compare_digest, so timing tells nothing about which key, if
        # any, came close.
        for i, key in enumerate(self._keys, start=1):
            if hmac.compare_digest(presented, key) and match is None:
                match = f"key-{i}"
        return match
