"""What the CLI says when https to serve (its own, ``--web.config.file``, or a TLS proxy's in front of it)
fails on the certificate.

httpx trusts certifi's public CAs, or the PEM file ``SSL_CERT_FILE`` names (``SSL_CERT_DIR``: a folder of
hashed certificates) in their place. It reads neither ``REQUESTS_CA_BUNDLE`` nor ``CURL_CA_BUNDLE``, which
an operator used to requests or curl sets first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gpuwarden.errors import ConfigError

_OTHER_BUNDLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def tls_hint(url: str, said: str, server: str = "serve") -> str:
    """What to do about a failed TLS handshake with ``url`` whose error says ``said``; "" for none.
    ``server``: what listens there (``serve``; ``the exporter`` for ``sim``), named where it is to change."""
    if not url.lower().startswith("https://"):
        return ""
    if "WRONG_VERSION_NUMBER" in said:
        return (
            " (the server speaks plain HTTP: use http://, or the address of the TLS proxy in front of it, or"
            f" start {server} with --web.config.file)"
        )
    if "CERTIFICATE_VERIFY_FAILED" not in said:
        return ""
    if "mismatch" in said:  # "Hostname mismatch", "IP address mismatch"
        return " (the certificate is for other names: give --url with a name it was issued for)"
    if "expired" in said:
        return (
            f" (the certificate has expired: renew it where TLS ends, {server}'s"
            f" tls_server_config.cert_file or the proxy in front of {server})"
        )
    trusted = next(
        (f"{n}={os.environ[n]}" for n in ("SSL_CERT_FILE", "SSL_CERT_DIR") if os.environ.get(n)), ""
    )
    others = [
        n for n in _OTHER_BUNDLES if os.environ.get(n) and os.environ[n] != os.environ.get("SSL_CERT_FILE")
    ]
    unread = f"; {' and '.join(others)} {'is' if len(others) == 1 else 'are'} not read" if others else ""
    return (
        f" (no CA {f'in {trusted}' if trusted else 'trusted here'} signed it: export"
        " SSL_CERT_FILE=/path/to/ca.pem, the PEM file of the CA that signed it (the certificate itself if"
        f" self-signed; it replaces the CAs trusted by default){unread})"
    )


def ca_file_problem(exc: OSError, server: str = "serve") -> str | None:
    """Why the CA certificates ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` names cannot be loaded (``exc``, from
    httpx reading them before it connects), naming the variable; None when neither is set. ``server``: as
    ``tls_hint``'s."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        value = os.environ.get(name)
        if value:
            return (
                f"{name}={value}: cannot load CA certificates from it ({exc}); give the PEM file of the CA"
                f" that signed {server}'s certificate (or that of the TLS proxy in front of it), or unset it"
            )
    return None


def ca_file_refusal(environ: Mapping[str, str], command: str) -> ConfigError | None:
    """Why ``command`` (``serve`` with webhooks, ``anomaly run``) cannot start with the ``SSL_CERT_FILE`` of
    ``environ``, or None: httpx loads it as each client is built, and a missing or non-PEM file ended the
    start in a traceback (``config validate`` said ok)."""
    value = environ.get("SSL_CERT_FILE")
    if not value:
        return None
    import ssl  # noqa: PLC0415 - only the commands that start services check it

    try:
        ssl.create_default_context(cafile=value)
    except OSError as exc:  # ssl.SSLError too: a file with no certificate in it
        return ConfigError(
            f"'{value}': cannot load CA certificates from it ({exc}); {command} refuses to start: give a PEM"
            " file of CA certificates, or unset it",
            field="SSL_CERT_FILE",
        )
    return None
