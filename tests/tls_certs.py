"""Test certificates made with the ``openssl`` command (the ``cryptography`` package is not a dependency): a
CA, a server certificate it signed for localhost and 127.0.0.1, a client certificate it signed, and a key
that belongs to neither."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TestCerts:
    """The PEM files ``make_certs`` wrote."""

    __test__ = False  # not a test class, for pytest

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    other_key: Path


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("openssl is not installed (Debian: apt-get install openssl)")
    subprocess.run([binary, *map(str, args)], check=True, capture_output=True)


def _signed(folder: Path, name: str, subject: str, extensions: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}.{kind}" for kind in ("key", "csr", "pem", "ext"))
    ext.write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", folder / "ca.pem", "-CAkey", folder / "ca.key",
        "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext,
    )  # fmt: skip
    return cert, key


def make_certs(folder: Path) -> TestCerts:
    """A CA and the certificates it signed, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", folder / "ca.key", "-out",
        folder / "ca.pem", "-days", "2", "-subj", "/CN=gpuwarden test CA",
    )  # fmt: skip
    cert, key = _signed(folder, "server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    client_cert, client_key = _signed(folder, "client", "/CN=prometheus", "extendedKeyUsage=clientAuth\n")
    _openssl("genrsa", "-out", folder / "other.key", "2048")
    return TestCerts(folder / "ca.pem", cert, key, client_cert, client_key, folder / "other.key")


def renewed_server_cert(folder: Path, name: str) -> tuple[Path, Path]:
    """Another certificate (a new serial) and key for localhost, from ``make_certs``' CA in ``folder``, as a
    renewal brings them."""
    return _signed(folder, name, "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")


def client_cert_with_sans(folder: Path, name: str, sans: str) -> tuple[Path, Path]:
    """A client certificate and its key from ``make_certs``' CA in ``folder``, with the subject alternative
    names ``sans`` (openssl's syntax: ``DNS:prometheus.example,IP:2001:db8::1``)."""
    return _signed(folder, name, "/CN=prometheus", f"extendedKeyUsage=clientAuth\nsubjectAltName={sans}\n")
