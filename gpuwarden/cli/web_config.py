"""``--web.config.file``, the option of ``exporter`` and ``serve`` that names their web configuration file
(TLS, basic auth, response headers: ``gpuwarden.webconfig``), as Prometheus' exporters name theirs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gpuwarden.errors import ConfigError

if TYPE_CHECKING:
    from gpuwarden.cli.startup import StartupLines
    from gpuwarden.webconfig import WebConfig

WEB_CONFIG_OPTION = typer.Option(
    "--web.config.file",
    "--web-config-file",
    help="Web configuration file (exporter-toolkit's format): TLS (tls_server_config), basic auth"
    " (basic_auth_users, bcrypt hashes) and response headers (http_server_config.headers). Default: plain"
    " HTTP, no authentication.",
)
VALIDATE_WEB_CONFIG_OPTION = typer.Option(
    "--web.config.file",
    "--web-config-file",
    help="Also check this web configuration file (the --web.config.file of exporter, serve and"
    " inference-server) as they check it at start, like promtool check web-config; without a"
    " configuration file, check it alone.",
)


def web_config(path: Path | None, lines: StartupLines) -> WebConfig | None:
    """The web configuration file at ``path`` read and checked (None without one); a file that would not
    serve as written is said on ``lines`` and the command exits 78, before anything listens. Basic auth over
    plain HTTP is served (exporter-toolkit serves it) with a warning: its passwords are readable on the
    way."""
    if path is None:
        return None
    from gpuwarden.webconfig import load_web_config  # noqa: PLC0415 - ssl and pydantic only when given

    try:
        web = load_web_config(path)
    except ConfigError as exc:
        raise lines.refused(exc) from exc
    warning = plain_http_warning(web)
    if warning is not None:
        lines.warning(warning)
    return web


def with_web_config_problems(error: ConfigError, path: Path | None) -> ConfigError:
    """``error`` (the configuration file's problems) with those of the web configuration file at ``path``
    after them: a command refused for its configuration said nothing of a broken ``--web.config.file``,
    which stopped the next start, after the configuration was mended (``config validate`` says both)."""
    if path is None:
        return error
    from gpuwarden.webconfig import load_web_config  # noqa: PLC0415 - as in web_config

    try:
        load_web_config(path)
    except ConfigError as web:
        return ConfigError.first_of([error.alone(), *error.more, web.alone(), *web.more])
    return error


def plain_http_warning(web: WebConfig) -> str | None:
    """The warning for basic auth over plain HTTP, which is served (exporter-toolkit serves it); None when
    the file sets TLS or no users."""
    from gpuwarden.webconfig import plain_http_users  # noqa: PLC0415 - as in web_config

    if not web.users or web.ssl_context is not None:
        return None
    return plain_http_users(web.path)
