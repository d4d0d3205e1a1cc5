"""The Kubernetes inventory's credentials from a kubeconfig's exec plugin (``aws eks get-token``, kubelogin,
``gke-gcloud-auth-plugin``), run again while it has given none.

The official client runs the plugin once, when it loads the kubeconfig; a plugin that fails then (an SSO
session expired, the cloud's token service unreachable for a moment) only has the client log an error, and
the client goes on without credentials for good: it refreshes a token that expires, never one it never got.
So every read was refused (401, or 403 as ``system:anonymous``) until serve restarted, with a hint about
RBAC. Here the kubeconfig is loaded again before each read while the client has no credentials, and the
read fails saying what the plugin said."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MethodType
from typing import Any

from gpuwarden.errors import SourceError

logger = logging.getLogger(__name__)

Lister = Callable[[str], Iterable[dict[str, Any]]]


def kubeconfig_load_errors() -> tuple[type[BaseException], ...]:
    """What loading a kubeconfig raises for a file it cannot use: the client's ``ConfigException``, an
    unreadable file, broken YAML, and the ``ValueError``/``TypeError``/``AttributeError`` its loader raises on
    a field of the wrong shape (a user that is a string, not a mapping). One list for serve's start and for
    the reload while an exec plugin has given no credentials, so both say the same instead of one of them
    crashing the refresh."""
    import yaml  # noqa: PLC0415 - only serve with a Kubernetes inventory needs these
    from kubernetes.config import ConfigException  # noqa: PLC0415

    return (ConfigException, OSError, ValueError, TypeError, AttributeError, yaml.YAMLError)


def has_credentials(configuration: Any) -> bool:
    """Whether the client's configuration carries any credentials: a token, a client certificate, a user."""
    return bool(configuration.api_key or configuration.cert_file or configuration.username)


class _Errors(logging.Handler):
    """The errors the kubernetes client's kubeconfig loader logs (on the root logger) while it loads."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "kubernetes" in record.pathname:
            self.messages.append(record.getMessage())


@contextmanager
def loader_errors() -> Iterator[list[str]]:
    """The errors the kubeconfig loader logs within the block (the exec plugin's stderr among them)."""
    handler = _Errors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.messages
    finally:
        root.removeHandler(handler)


def reloading_credentials(
    lister: Lister, configuration: Any, load: Callable[[], object], failed: Sequence[str] = ()
) -> Lister:
    """``lister``, which first loads the kubeconfig again (``load``, into ``configuration``) while the
    client has no credentials; a load that still gives none fails the read (retryable) with the loader's
    errors, so the last inventory stays and the next refresh runs the plugin again. ``failed``: what the
    load that made the client said: the first read fails with it instead of loading again at once (a
    plugin that hangs cost ``request_timeout_seconds`` at each load, serve's start twice that)."""

    unreadable = kubeconfig_load_errors()
    unreported = [list(failed)] if failed else []  # the start's failure, until the first read has said it

    def list_all(resource: str) -> Iterable[dict[str, Any]]:
        if not has_credentials(configuration):
            if unreported:
                errors = unreported.pop()
            else:
                with loader_errors() as errors:
                    try:
                        load()
                    except unreadable as exc:  # unreadable now
                        errors.append(f"{type(exc).__name__}: {exc}")
            if not has_credentials(configuration):
                said = "; ".join(errors) or "it gave no token"
                raise SourceError(
                    f"list {resource}: the kubeconfig's exec plugin gave serve no credentials ({said});"
                    " fix what it says (log in again, reach its token service); it runs again at every"
                    " refresh",
                    source="kubernetes",
                    retryable=True,
                )
        unreported.clear()
        return lister(resource)

    return list_all


def _credentials(configuration: Any) -> tuple[object, ...]:
    """What the client authenticates with and verifies the API by, to tell whether reading the kubeconfig
    again changed it: a client certificate and the cluster's CA by their content too (one renewed in place
    keeps its path)."""
    return (
        dict(configuration.api_key),
        configuration.username,
        configuration.password,
        configuration.ca_cert_data,
        *(_content(p) for p in (configuration.cert_file, configuration.key_file, configuration.ssl_ca_cert)),
    )


def _content(path: str | None) -> bytes | None:
    try:
        return Path(path).read_bytes() if path else None
    except OSError:
        return None


def renewing_credentials(
    lister: Lister,
    configuration: Any,
    load: Callable[[], object],
    refused: type[Exception] | tuple[type[Exception], ...],
) -> Lister:
    """``lister``, which reads the kubeconfig again (``load``, into ``configuration``) when the API refuses
    its credentials or the client refuses the API (``refused``: HTTP 401, a certificate that does not
    verify against the CA) and lists again at once with the new ones, once, as kubectl does. The client
    reads a token (``token``, ``tokenFile``) and the cluster's CA (``certificate-authority-data``, copied to
    a file of its own) once, when it loads the kubeconfig: a token that expired and was renewed in its file
    (a projected service account token, a kubeconfig rewritten by the cloud's CLI), or a CA re-issued, was
    refused at every refresh until serve restarted. The same credentials and CA after the reload (nothing
    renewed yet), or a refusal after part of the list was read, fail the read; the next refresh tries
    again."""
    unreadable = kubeconfig_load_errors()

    def list_all(resource: str) -> Iterator[dict[str, Any]]:
        read = False
        try:
            for item in lister(resource):
                read = True
                yield item
            return
        except refused as exc:
            if read:
                raise
            before = _credentials(configuration)
            try:
                load()
            except unreadable as reload_exc:
                logger.warning(
                    "kubernetes inventory: %s; cannot read the kubeconfig again: %s", exc, reload_exc
                )
                raise exc from reload_exc
            if _credentials(configuration) == before:
                raise
            logger.warning(
                "kubernetes inventory: %s; the kubeconfig has new credentials or a new CA: listing again"
                " with them",
                exc,
            )
        yield from lister(resource)

    return list_all


def trim_token(configuration: Any) -> None:
    """Have the client send its bearer token without the whitespace around it. A token file ends with a
    newline when a shell wrote it (``kubectl create token sa > token``); kubectl trims it (client-go's
    ``tokenFile``), the official Python client sends it as is and urllib3 refuses the header ("Invalid
    header value"), at every read. The client sets the token again from what it loaded before each request
    (its ``refresh_api_key_hook``, which replaces itself), so the trim is made where the request's header
    is taken (``auth_settings``), once per configuration."""
    if getattr(configuration.auth_settings, "__func__", None) is _trimmed_auth_settings:
        return
    # A method bound to the configuration, so that a copy of it (``Configuration.set_default``) trims its own.
    configuration.auth_settings = MethodType(_trimmed_auth_settings, configuration)


def _trimmed_auth_settings(configuration: Any) -> Any:
    """The client's ``auth_settings``, with the bearer token's whitespace trimmed (``trim_token``)."""
    found = type(configuration).auth_settings(configuration)
    bearer = found.get("BearerToken")
    if bearer and isinstance(bearer.get("value"), str):
        bearer["value"] = bearer["value"].strip()
    return found
