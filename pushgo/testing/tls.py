"""TLS material for the mock providers: one throw-away CA and a server certificate for
127.0.0.1/localhost (trustme), the server `ssl.SSLContext` with ALPN, and the CA PEM as a
file the gateway can use as `PUSHGO_PROVIDER_CA_FILE`.

Owns only certificates and contexts; imports nothing from pushgo.
"""

from __future__ import annotations

import fcntl
import os
import ssl
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path

import trustme

DEFAULT_IDENTITIES = ("127.0.0.1", "localhost")


class LocalCA:
    """A private CA plus one leaf certificate for the given host names/addresses.

    Share one instance between MockAPNs and MockFCM so a single CA file trusts both.
    """

    def __init__(self, identities: Sequence[str] = DEFAULT_IDENTITIES,
                 ca: trustme.CA | None = None) -> None:
        self.identities = tuple(identities)
        self._ca = ca or trustme.CA()
        self._leaf = self._ca.issue_cert(*self.identities)
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca_file: Path | None = None

    @classmethod
    def persistent(cls, directory: str | Path,
                   identities: Sequence[str] = DEFAULT_IDENTITIES) -> LocalCA:
        """The CA kept in `directory` (``ca.pem`` and ``ca.key``, created on first use), so
        every mock started with the same directory is trusted by one ``ca.pem``: the file to
        give the gateway as ``PUSHGO_PROVIDER_CA_FILE``. Each instance issues its own leaf."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert, key = folder / "ca.pem", folder / "ca.key"
        with open(folder / ".lock", "w") as lock:  # two mocks started at once make one CA
            fcntl.flock(lock, fcntl.LOCK_EX)
            if cert.exists() and key.exists():
                ca = trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
            else:
                ca = trustme.CA()
                fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(ca.private_key_pem.bytes())
                cert.write_bytes(ca.cert_pem.bytes())
        made = cls(identities, ca)
        made._ca_file = cert
        return made

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self._ca.cert_pem.bytes()

    @property
    def ca_file(self) -> Path:
        """A file holding the CA PEM (written on first use into a private temporary directory
        that is removed when this object is collected or the interpreter exits)."""
        if self._ca_file is None:
            tmp = tempfile.TemporaryDirectory(prefix="pushgo-mock-ca-")
            weakref.finalize(self, tmp.cleanup)
            self._tmpdir = tmp
            self._ca_file = self.write_ca_file(Path(tmp.name) / "ca.pem")
        return self._ca_file

    def write_ca_file(self, path: str | Path) -> Path:
        """Write the CA PEM to `path` (e.g. under pytest's tmp_path) and return it."""
        target = Path(path)
        target.write_bytes(self.ca_pem)
        return target

    def server_context(self, alpn: Sequence[str] = ("h2",)) -> ssl.SSLContext:
        """A server context presenting the leaf certificate, offering `alpn` in that order."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._leaf.configure_cert(ctx)
        ctx.set_alpn_protocols(list(alpn))
        return ctx

    def client_context(self, alpn: Sequence[str] = ("h2",)) -> ssl.SSLContext:
        """A client context that trusts this CA (for raw test clients)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._ca.configure_trust(ctx)
        ctx.set_alpn_protocols(list(alpn))
        return ctx


def server_context(ca: LocalCA | None = None,
                   alpn: Sequence[str] = ("h2",)) -> tuple[LocalCA, ssl.SSLContext]:
    """Convenience: a (new or given) CA and a server context with ALPN `alpn`."""
    authority = ca or LocalCA()
    return authority, authority.server_context(alpn)
