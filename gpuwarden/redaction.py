"""URLs as gpuwarden shows them in logs, errors and ``config show``: without what may be a credential.

A store URL keeps everything but its password (``postgresql+psycopg://gw:***@db:5432/gw``, and libpq's
``?password=***`` and ``?sslpassword=***``, with which psycopg connects as well): the host and the database
are what a person needs to find the problem. So does any other URL shown whole (a Prometheus, OTLP or
Pushgateway URL, ``--url``), with the tokens of its query hidden too (``?token=***``, ``?api_key=***``), and
a user name given alone, which there is a token (``https://***@host``). A
webhook URL often *is* the credential (Slack's ``/services/T000/B000/XXXX``, a ``?api_key=``), so only its
scheme and host are shown.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection
from urllib.parse import unquote_plus, urljoin, urlsplit

MASK = "**********"
# A text as Python's repr quotes it (a parser's message names what it could not read so): between ', a '
# inside escaped (\'), or between " when it holds a ' and no ".
REPR_SINGLE = r"'(?:[^'\\]|\\.)*'"
REPR_QUOTED = re.compile(rf"{REPR_SINGLE}|\"(?:[^\"\\]|\\.)*\"")
# user:password@ as SQLAlchemy's make_url reads it: the user has no ':' or '/', the password no '@'; and on to
# the last @ before the path, as an http client reads it (an @ left unescaped in the password).
_PASSWORD = re.compile(r"(://[^:/]*:)[^@]*(?:@[^@/?#]*(?=@))*@")
# A user name alone (``https://TOKEN@host``): a token given as the user, as GitHub's URLs and a gateway's
# basic auth without a password take one. A store's user alone is a database role (``postgresql://gw@db``).
_LONE_USER = re.compile(r"^((?!postgres|sqlite)[a-z][a-z0-9+.-]*://)[^:/?#]+@", re.IGNORECASE)
# A credential in the query or the fragment: libpq's password keywords, which SQLAlchemy hands psycopg as
# connection arguments, and the names APIs take a token by (``?token=``, ``?access_token=``, ``?api_key=``,
# ``?key=``, ``?sig=``, AWS's ``X-Amz-Signature``, ``#access_token=``): one of those words, in any case,
# alone or after a prefix that ends in ``_``, ``-`` or ``.``; ``monkey=``, ``tokens=`` and libpq's
# ``sslkey=`` (a file's path) are no credential. A name is read as its server reads it, percent-decoded:
# SQLAlchemy hands psycopg ``?pass%77ord=S3cret`` as ``password``, and it was shown whole.
_SECRET_NAME = re.compile(
    r"(?:ssl(?=password)|.*[_.-])?(?:password|passwd|pwd|token|api_?key|key|secret|signature|sig|auth)",
    re.IGNORECASE | re.DOTALL,
)
_QUERY_PARAMETER = re.compile(r"(?P<name>[?&#;](?P<key>[^=&#;]*)=)[^&#;]+")
# A password in a libpq connection string (``host=db password=x``, a value with a space quoted: ``'a b'``).
_CONNINFO_PASSWORD = re.compile(r"((?:^|\s)(?:ssl)?password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\S*)")


def hidden_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` (a lone ``user@``, a token, whole but in a store
    URL), the tokens and passwords of its query and fragment (``?token=***``) and the password of a libpq
    connection string replaced by ``***`` (the rest as given)."""
    hidden = _LONE_USER.sub(r"\1***@", _PASSWORD.sub(r"\1***@", url, count=1), count=1)
    hidden = _QUERY_PARAMETER.sub(_query_value_hidden, hidden)
    return _CONNINFO_PASSWORD.sub(r"\1***", hidden)


def credential_parameters(url: str) -> list[str]:
    """The names of the parameters of ``url``'s query and fragment that ``hidden_password`` hides as a
    credential's (``api_key``, ``token``, ``sig``...), each with a value, as written."""
    return [
        parameter["key"]
        for parameter in _QUERY_PARAMETER.finditer(url)
        if _SECRET_NAME.fullmatch(unquote_plus(parameter["key"]))
    ]


def _query_value_hidden(parameter: re.Match[str]) -> str:
    """A parameter of a query or fragment with its value as ``***`` when its name is a credential's."""
    secret = _SECRET_NAME.fullmatch(unquote_plus(parameter["key"]))
    return f"{parameter['name']}***" if secret else parameter[0]


def quoting_only(problem: str, url: str, shown: str) -> str:
    """``problem`` with what it quotes of ``url`` hidden (``'***'``) unless ``shown`` shows it: a password
    holding "/", "#" or "?" ends the host there, and the parser quoted its start as the port, as Python's
    repr does (``Invalid port: 'S3cret'``, ``"S3cret'x"``). A character it names (``'\\x00'``) is kept."""
    return REPR_QUOTED.sub(lambda m: m[0] if _not_of(m[0], url, shown) else "'***'", problem)


def _not_of(quoted: str, url: str, shown: str) -> bool:
    """Whether the repr ``quoted`` is not a part of ``url`` that ``shown`` hides (one that is not a repr,
    a message's own quotes, is taken for one: hidden)."""
    try:
        text = ast.literal_eval(quoted)
    except (SyntaxError, ValueError):
        return False
    return isinstance(text, str) and (text not in url or text in shown)


def shown_url(url: str) -> str:
    """The scheme, host and port of ``url``, and ``/**********`` when it has a path, query or user."""
    where = shown_host(url)
    if where == MASK:
        return MASK
    parts = urlsplit(url)
    hidden = f"/{MASK}" if parts.path.strip("/") or parts.query or parts.username else "/"
    return f"{parts.scheme}://{where}{hidden}"


def shown_host(url: str) -> str:
    """The host and port of ``url`` (``am.example:9093``, ``[::1]:8080``), where a line names a receiver in
    few words: no user, password, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL (a bad port, an unclosed [): nothing of it is shown
        return MASK
    host = f"[{host}]" if ":" in host else host
    return f"{host}{port}"


# What a database driver's error may name of where and as whom it connects. libpq quotes every name it
# gives (host, user, role, database, socket path: ``for user "gw"``), psycopg its own with repr (``host
# 'db'``); a resolved address follows a host in brackets (``"db" (10.0.0.5)``); a DSN may be echoed whole.
# An http(s) URL there is a link to the driver's docs (SQLAlchemy's "Background on this error at: ...").
_ANY_URL = re.compile(r"\b(?!https?://)([a-z][a-z0-9+.-]*://)\S+", re.IGNORECASE)
# A conninfo value runs to the next space, or is quoted whole ('a b', libpq's \' inside) when it has one.
_CONNINFO = re.compile(
    r"\b(host|hostaddr|user|password|sslpassword|dbname|passfile|service)=(?:'(?:[^'\\]|\\.)*'|\S+)",
    re.IGNORECASE,
)
# PostgreSQL names an object of the schema after its kind (``relation "alerts" does not exist``, ``column "x"
# of relation "y"``, ``unique constraint "alerts_pkey"``); libpq names a host, user or database after none.
# A server or libpq speaking another language quotes as its translation does (German ``»gw«``, French ``« gw
# »``, Spanish ``«gw»``), and names no kind in English: such a name is hidden whatever it is.
# PostgreSQL puts a name between " as it is (a " inside stays single), or doubles a " inside (``"a""b"``):
# a closing quote is followed by no ASCII letter or digit (Japanese and Chinese go on with a word:
# ``"gw"は``). A ' opens a quote where no letter, digit or backslash is before it (an apostrophe is:
# ``can't``, ``server's``, ``l'index``, Ukrainian ``п'ять``) but a Chinese, Japanese or Korean one, which
# writes no apostrophe (``角色'gw'``), or after a bytes repr's b; Python's repr quotes a value with spaces so
# (``KeyError: 'gpu 7 x'``) and escapes a ' inside as libpq does (``\'``).
_CJK = "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_MAY_OPEN = rf"(?:(?<![^\W{_CJK}])(?<!\\)|(?<=\bb))"
_OPENS = rf"{_MAY_OPEN}'"
_ENDS = r"(?![A-Za-z0-9_])"
_QUOTED = re.compile(
    r"(?P<kind>\b(?:relation|table|column|constraint|index|sequence) )?"
    rf"(?P<name>\"(?:[^\"]|\"\")*\"{_ENDS}|{_MAY_OPEN}{REPR_SINGLE}{_ENDS}|»[^«»]*«|«[^«»]*»|„[^“”]*[“”]|“[^”]*”)"
)
# Any quote mark, opening or closing; one outside every pair above leaves no telling where a name ends.
_MARK = re.compile(rf"[\"»«„“”]|{_OPENS}")
_ANY_MARK = re.compile("[\"'»«„“”]")  # in a name: any quote mark, an apostrophe too
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|(?<=\()[0-9a-f]*:[0-9a-f:.%\w]*(?=\))", re.IGNORECASE)
HIDDEN_NAMES = " (names hidden: serve's log has them)"


def hidden_names(reason: str, schema: Collection[str] = frozenset(), known: Collection[str] = ()) -> str:
    """A store's error (``store_failure``) for a reader without a token (``/-/ready``): its URLs (but for
    http links) as their scheme alone, its quoted names, addresses and conninfo values as ``***`` (all from
    its first quote mark on when a mark pairs with none), and ``HIDDEN_NAMES`` after it when anything was
    hidden; what went wrong (``password authentication failed``, ``port 5432``) kept, and so is a quoted
    name of ``schema`` (the store's own tables, columns, indexes and constraints) where the error says it
    names one (``relation "alerts"``). ``known``: the names the failed connection used (``connection_names``):
    one holding a quote mark is hidden whole wherever the line says it (``role "gw" x "y"``: two marks in a
    name pair up as two names, and the words between showed)."""
    hidden = _quotes_hidden(_known_hidden(reason, known), schema)  # a quoted URL or value whole
    hidden = _ANY_URL.sub(r"\1***", hidden)
    hidden = _CONNINFO.sub(r"\1=***", hidden)  # a password may hold any character but a space unquoted
    hidden = _ADDRESS.sub("***", hidden)
    return hidden if hidden == reason else hidden + HIDDEN_NAMES


def _known_hidden(reason: str, known: Collection[str]) -> str:
    """``reason`` with each name of ``known`` that holds a quote mark as ``***`` (one without is told by its
    quotes)."""
    for name in sorted(known, key=len, reverse=True):  # a name within a longer one: the longer first
        if _ANY_MARK.search(name):
            reason = reason.replace(name, "***")
    return reason


def _quotes_hidden(reason: str, schema: Collection[str]) -> str:
    """``reason`` with its quoted names as ``_quoted_shown`` shows them; from its first quote mark on all
    ``***`` when a mark pairs with none (a name holding a quote mark shifts every pair after it, and the
    words between shifted pairs may be a name or a value)."""
    pieces, end = [], 0
    for quoted in _QUOTED.finditer(reason):
        pieces += [reason[end : quoted.start()], _quoted_shown(quoted, schema)]
        end = quoted.end()
    pieces.append(reason[end:])
    if not any(_MARK.search(between) for between in pieces[::2]):
        return "".join(pieces)
    return _MARK.split(reason, maxsplit=1)[0] + "***"


def _quoted_shown(quoted: re.Match[str], schema: Collection[str]) -> str:
    """A quoted name as ``hidden_names`` shows it: whole when it is of ``schema`` and named as a table,
    column, index or constraint; else its quotes around ``***``."""
    kind, name = quoted.group("kind") or "", quoted.group("name")
    if kind and name[1:-1] in schema:
        return quoted.group()
    return f"{kind}{name[0]}***{name[-1]}"


def shown_redirect(url: str, location: str) -> str:
    """Where a redirect answered to a request for ``url`` points (``location``, relative to ``url``), as
    ``shown_url`` shows it: the rest may be a credential, as the request's own URL's."""
    try:
        return shown_url(urljoin(url, location))
    except ValueError:  # urljoin of an unclosed [
        return "an invalid URL"
