"""The one exception hierarchy of gpuwarden.

Third-party exceptions are translated into these at a backend or source boundary with ``raise ... from``.
"""

from __future__ import annotations

from typing import Any


class GpuwardenError(Exception):
    """Base of every error gpuwarden raises on purpose."""


BUSY = "busy"
"""``ConfigError.outside``: what the setting names is held by another process (a port, a lock, a file)."""
DOWN = "down"
"""``ConfigError.outside``: what the setting names did not answer or is not there (a store's server, NVML)."""


class ConfigError(GpuwardenError):
    """A configuration or data file is wrong; raised at load time, names the file, field and fix.

    ``outside``: not the setting is wrong but the world it names, ``BUSY`` or ``DOWN``, so a later start with
    the same setting may succeed (a command's exit status says which: ``gpuwarden.cli.startup``); None for
    a problem of the configuration itself."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        field: str = "",
        line: int | None = None,
        more: tuple[ConfigError, ...] = (),
        reads: tuple[str, ...] = (),
        outside: str | None = None,
    ) -> None:
        self.message = message
        self.outside = outside
        # Other settings the check that found it read (``anomaly.infer_every_seconds`` for a query's step): a
        # problem of the file only while they hold the file's values, not a default that stood in for them.
        self.reads = reads
        self.path = path
        self.field = field
        self.line = line
        self.more = more  # the file's other problems, which `config validate` lists
        where = path
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        if field:
            where = f"{where}: {field}" if where else field
        super().__init__(f"{where}: {message}" if where else message)

    def in_file(self, path: str) -> ConfigError:
        """The same error, naming ``path`` if it names no file yet."""
        if self.path or not path:
            return self
        return self._but(path=path, more=tuple(error.in_file(path) for error in self.more))

    def reading(self, reads: tuple[str, ...]) -> ConfigError:
        """The same error, found by a check that read the settings ``reads`` as well."""
        return self._but(reads=(*self.reads, *reads))

    @classmethod
    def first_of(cls, errors: list[ConfigError]) -> ConfigError:
        """The first of ``errors`` saying how many more there are, with the others in ``more``."""
        first, *rest = errors
        if not rest:
            return first
        return first._but(message=f"{first.message}{_count_of_more(len(rest))}", more=tuple(rest))

    def alone(self) -> ConfigError:
        """This problem without the count of the others it carries: for a listing that prints them too."""
        message = self.message.removesuffix(_count_of_more(len(self.more))) if self.more else self.message
        return self._but(message=message, more=())

    def _but(self, **changed: Any) -> ConfigError:
        """This error with ``changed`` (``message``, ``path``, ``more``, ``reads``), the rest as it is."""
        kept: dict[str, Any] = {"path": self.path, "field": self.field, "line": self.line, "more": self.more}
        kept |= {"reads": self.reads, "outside": self.outside}
        return ConfigError(**{"message": self.message, **kept, **changed})


def _count_of_more(count: int) -> str:
    """What ``first_of`` appends to the first problem's message: how many more there are."""
    return f" (and {count} more problem{'s' if count > 1 else ''})"


UNPROCESSABLE = 422
"""What Alertmanager's API answers a body that parses but breaks its OpenAPI schema (a required field missing
or null, a ``uri`` that is none), where a value of the wrong type is a 400."""

# The ``code`` of go-openapi's error body (``{"code", "message"}``) that Alertmanager 0.25 answers with a 422:
# which schema rule failed (measured: go-openapi/errors' InvalidTypeCode, RequiredFailCode, MinItemsFailCode).
INVALID_FORMAT = 601  # a ``format`` not met: a generatorURL that is no ``uri``
REQUIRED = 602  # a required field absent or null
TOO_FEW_ITEMS = 612  # an array under its ``minItems``: a silence with no matchers


class InputError(GpuwardenError):
    """A request payload or command-line value is malformed; names the field at fault. ``status``: the
    HTTP status the API answers it with (400, or ``UNPROCESSABLE`` where Alertmanager's does); ``code``: the
    go-openapi code Alertmanager's 422 body carries for it (``REQUIRED``...), None for the status."""

    def __init__(self, message: str, *, field: str = "", status: int = 400, code: int | None = None) -> None:
        self.message = message  # without the field, to name another field when re-raised
        self.field = field
        self.status = status
        self.code = code
        super().__init__(f"{field}: {message}" if field else message)


class SourceError(GpuwardenError):
    """Reading metrics failed (NVML, Prometheus, a file)."""

    def __init__(self, message: str, *, source: str = "", retryable: bool = True) -> None:
        self.source = source
        self.retryable = retryable
        super().__init__(f"{source}: {message}" if source else message)


class BackendError(GpuwardenError):
    """A remediation or notification backend failed (Slurm, Kubernetes, Slack); ``code`` is the backend's
    own error code when it gave one (Slack's ``message_not_found``). ``retry_after``: the backend refused
    the call for a rate limit and asked to wait that many seconds before calling it again; ``limit``: which
    of its limits, where it has several and the others still take calls (Slack's per method: a history
    lookup refused, posts go on), empty for the backend's as a whole. ``until_fixed``: the backend refuses
    every call until someone acts (Slack's revoked token): the outbox holds all of its messages, none
    failed, until a call goes through again."""

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        retryable: bool = False,
        code: str = "",
        retry_after: float | None = None,
        limit: str = "",
        until_fixed: bool = False,
    ) -> None:
        self.backend = backend
        self.until_fixed = until_fixed
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(f"{backend}: {message}" if backend else message)


class ActionRefused(GpuwardenError):
    """A guardrail said no. Not a failure: nothing was attempted."""

    def __init__(self, reason: str, *, guardrail: str = "") -> None:
        self.reason = reason
        self.guardrail = guardrail
        super().__init__(f"{guardrail}: {reason}" if guardrail else reason)


class ActionFailed(GpuwardenError):
    """An action was attempted and did not achieve its effect."""
