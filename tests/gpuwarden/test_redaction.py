"""URLs shown without their credentials: a store URL's password, a webhook URL's path and query."""

from __future__ import annotations

import pytest

from gpuwarden.redaction import HIDDEN_NAMES, hidden_names, hidden_password, shown_host, shown_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://gw:S3cret@db.example:5432/gw",
            "postgresql+psycopg://gw:***@db.example:5432/gw",
        ),
        (
            "postgresql://gw:pa/ss@db/gw",
            "postgresql://gw:***@db/gw",
        ),  # make_url reads "pa/ss" as the password
        ("postgresql://:only-a-password@db/gw", "postgresql://:***@db/gw"),
        ("postgresql://gw@db/gw", "postgresql://gw@db/gw"),
        ("sqlite:////var/lib/gpuwarden/i.db", "sqlite:////var/lib/gpuwarden/i.db"),
        ("/var/lib/gpuwarden/a:b@c.db", "/var/lib/gpuwarden/a:b@c.db"),  # a path, no URL
        # psycopg connects with a password given in the query as with one before the @ (libpq's keywords)
        ("postgresql+psycopg://gw@db/gw?password=S3cret", "postgresql+psycopg://gw@db/gw?password=***"),
        (
            "postgresql://gw@db/gw?sslmode=require&sslpassword=k3y&password=S3&application_name=gw",
            "postgresql://gw@db/gw?sslmode=require&sslpassword=***&password=***&application_name=gw",
        ),
        ("postgresql://gw:a@db/gw?password=b", "postgresql://gw:***@db/gw?password=***"),
        # An @ left unescaped in the password: an http client (httpx, urllib) takes all up to the last @ as
        # the user and password, and SQLAlchemy the rest as the host; its end showed (u:***@ss@db).
        ("http://gw:p@ss@prom.example:9090/x?a=b@c", "http://gw:***@prom.example:9090/x?a=b@c"),
        ("postgresql://gw:p@s@s@db/gw", "postgresql://gw:***@db/gw"),
        # A token in the query (an OTLP collector's, a Prometheus proxy's): each credential-named value
        # hidden, whatever its case or prefix (AWS's X-Amz-Signature), the other parameters kept.
        (
            "http://otel:4318/v1/traces?token=T0k&x=1&access_token=A&api_key=K&apikey=K2&key=K3",
            "http://otel:4318/v1/traces?token=***&x=1&access_token=***&api_key=***&apikey=***&key=***",
        ),
        (
            "https://s3/b?X-Amz-Signature=S&sig=S2&Secret=S3&client_secret=S4&auth=A&monkey=m&tokens=t",
            "https://s3/b?X-Amz-Signature=***&sig=***&Secret=***&client_secret=***&auth=***&monkey=m&tokens=t",
        ),
        ("http://am:9093/#access_token=T0k", "http://am:9093/#access_token=***"),
        ("http://prom:9090/?token=", "http://prom:9090/?token="),  # nothing to hide
        (  # libpq's sslkey is a file's path, shown; its sslpassword is hidden
            "postgresql://gw@db/gw?sslkey=/etc/gw/k.pem&sslpassword=S",
            "postgresql://gw@db/gw?sslkey=/etc/gw/k.pem&sslpassword=***",
        ),
        # A token as the user name (GitHub's https://TOKEN@host, a gateway's basic auth without a password)
        # showed whole; a store's user is a role, kept.
        ("https://ghp_T0k3n@pushgateway:9091", "https://***@pushgateway:9091"),
        ("http://T0k@en@prom/x?a=b", "http://***@prom/x?a=b"),
        ("HTTP://T0k@prom:9090", "HTTP://***@prom:9090"),
        ("postgres://gw@db/gw", "postgres://gw@db/gw"),
        # A parameter's name percent-encoded: SQLAlchemy decodes it and psycopg connects with the password,
        # which serve's start line and errors showed whole; an OTLP collector decodes ``%74oken`` alike.
        (
            "postgresql+psycopg://gw@db/gw?pass%77ord=S3cret&%73slpassword=K3y&sslkey=/k%2Epem",
            "postgresql+psycopg://gw@db/gw?pass%77ord=***&%73slpassword=***&sslkey=/k%2Epem",
        ),
        (
            "http://otel:4318/v1/traces?%74oken=T0k&api%5Fkey=K&monkey=m",
            "http://otel:4318/v1/traces?%74oken=***&api%5Fkey=***&monkey=m",
        ),
    ],
    ids=[
        "password",
        "slash-in-password",
        "no-user",
        "no-password",
        "sqlite-url",
        "sqlite-path",
        "password-in-the-query",
        "ssl-key-password-and-password-in-the-query",
        "password-before-the-at-and-in-the-query",
        "at-in-an-http-password",
        "ats-in-a-store-password",
        "tokens-in-the-query",
        "signatures-secrets-and-look-alikes",
        "token-in-the-fragment",
        "empty-token",
        "sslkey-a-path",
        "token-as-the-user",
        "at-in-a-token-as-the-user",
        "upper-case-scheme",
        "store-user-postgres",
        "percent-encoded-password-names",
        "percent-encoded-token-names",
    ],
)
def test_a_store_urls_password_is_hidden_and_the_rest_kept(url: str, shown: str) -> None:
    assert hidden_password(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XOX", "https://hooks.slack.com/**********"),
        ("http://127.0.0.1:9000/?api_key=k", "http://127.0.0.1:9000/**********"),
        ("http://u:p@[::1]:8080/", "http://[::1]:8080/**********"),
        ("http://receiver/", "http://receiver/"),
        ("http://receiver:99999/x", "**********"),
    ],
    ids=["path", "query", "user-and-ipv6", "bare", "bad-port"],
)
def test_a_webhook_url_is_shown_by_its_scheme_and_host_alone(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://gw:S3cret@am.example:9093/api/v2/alerts?k=1", "am.example:9093"),
        ("https://u@[::1]:8080/", "[::1]:8080"),
        ("http://receiver/", "receiver"),
        ("http://receiver:99999/x", "**********"),
    ],
    ids=["user-password-path-query", "ipv6", "no-port", "bad-port"],
)
def test_a_receiver_is_named_by_its_host_and_port_alone(url: str, shown: str) -> None:
    assert shown_host(url) == shown


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("unable to open database file", "unable to open database file"),
        ("database is locked (Background on this error at: https://sqlalche.me/e/20/e3q8)", None),
        ("server closed the connection unexpectedly", None),
        (
            'connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: No such file',
            'connection to server on socket "***" failed: No such file' + HIDDEN_NAMES,
        ),
        (
            'connection to server at "db" (fe80::1%eth0), port 5432 failed: timeout expired',
            'connection to server at "***" (***), port 5432 failed: timeout expired' + HIDDEN_NAMES,
        ),
        (
            'missing "=" after "postgresql://gw:S3cret@db/gw" in connection info string',
            'missing "***" after "***" in connection info string' + HIDDEN_NAMES,
        ),
        ("bad dsn postgresql://gw:S3cret@db/gw here", "bad dsn postgresql://*** here" + HIDDEN_NAMES),
        ("host=db port=5432 user=gw: refused", "host=*** port=5432 user=*** refused" + HIDDEN_NAMES),
        (  # libpq quotes a value with a space; its second word was shown, and sslpassword was not hidden
            "host='db a' password='S3c ret' sslpassword=K3y refused",
            "host=*** password=*** sslpassword=*** refused" + HIDDEN_NAMES,
        ),
    ],
    ids=[
        "sqlite",
        "docs-link",
        "closed",
        "socket",
        "ipv6-address",
        "echoed-dsn",
        "dsn",
        "conninfo",
        "conninfo-quoted",
    ],
)
def test_a_store_error_shown_without_a_token_hides_names_and_keeps_what_went_wrong(
    said: str, shown: str | None
) -> None:
    assert hidden_names(said) == (said if shown is None else shown)


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ('relation "alerts" does not exist', None),
        (
            'column "x" of relation "alerts" does not exist',
            'column "***" of relation "alerts" does not exist',
        ),
        ('database "alerts" does not exist', 'database "***" does not exist'),
        ("index 'alerts' broken", None),
        ('role "alerts" and table "alerts"', 'role "***" and table "alerts"'),
    ],
    ids=["schema-table", "other-column", "database-named-like-a-table", "single-quoted", "role-then-table"],
)
def test_a_quoted_name_is_kept_only_where_the_error_names_an_object_of_the_schema(
    said: str, shown: str | None
) -> None:
    assert hidden_names(said, {"alerts"}) == (said if shown is None else shown + HIDDEN_NAMES)


@pytest.mark.parametrize(
    ("said", "shown"),
    [  # the words of PostgreSQL 15's own translations (Debian's postgres-15.mo and libpq5-15.mo)
        (
            "FATAL:  Passwort-Authentifizierung für Benutzer »gw« fehlgeschlagen",
            "FATAL:  Passwort-Authentifizierung für Benutzer »***« fehlgeschlagen",
        ),
        (
            "la connexion au serveur sur « db.internal » (10.0.0.5), port 5432 a échoué : ",
            "la connexion au serveur sur «***» (***), port 5432 a échoué : ",
        ),
        (
            "falló la conexión al servidor en «db.internal», puerto 5432: ",
            "falló la conexión al servidor en «***», puerto 5432: ",
        ),
        ("Verbindung zu „db“ fehlgeschlagen", "Verbindung zu „***“ fehlgeschlagen"),
        ("connection to “db” failed", "connection to “***” failed"),
        ("Relation »alerts« existiert nicht", "Relation »***« existiert nicht"),  # no kind said in English
    ],
    ids=["german-user", "french-host", "spanish-host", "low-high-quotes", "curly-quotes", "german-table"],
)
def test_a_name_quoted_as_a_translated_message_quotes_it_is_hidden_too(said: str, shown: str) -> None:
    assert hidden_names(said, {"gw", "db", "alerts"}) == shown + HIDDEN_NAMES


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        (  # a user named x"y: the pair "x" ended inside the name, y showed
            'FATAL:  password authentication failed for user "x"y"',
            "FATAL:  password authentication failed for user ***",
        ),
        (  # a user named x" y: every pair after it shifted, and the database between two showed
            'FATAL:  no pg_hba.conf entry for host "10.0.0.5", user "x" y", database "gw_prod", no'
            " encryption",
            "FATAL:  no pg_hba.conf entry for host ***",
        ),
        (  # PostgreSQL 15's Japanese translation drops the database's closing quote (postgres-15.mo)
            'FATAL:  pg_hba.conf にホスト"10.0.0.5"、ユーザー"gw"、データベース"gw_prod, no encryption用の'
            "エントリがありません",
            "FATAL:  pg_hba.conf にホスト***",
        ),
        (  # and the Ukrainian one a table's (postgres-15.mo): from the mark on, nothing is shown
            'таблиця "gw_prod.alerts: скорочена від 3 до 1 сторінок',
            "таблиця ***",
        ),
        ("value 'gpu 7 x refused", "value ***"),  # a ' that opens and never closes
        ("Array-Inhalt muss mit »gw» anfangen", "Array-Inhalt muss mit ***"),  # » closed by »
    ],
    ids=[
        "name-holds-a-quote",
        "shifted-pairs",
        "japanese-unclosed",
        "ukrainian-unclosed",
        "single",
        "german",
    ],
)
def test_an_error_whose_quotes_do_not_pair_is_hidden_from_its_first_quote_mark_on(
    said: str, shown: str
) -> None:
    assert hidden_names(said, {"alerts"}) == shown + HIDDEN_NAMES


@pytest.mark.parametrize(
    ("said", "shown"),
    [  # libpq's, psycopg's and PostgreSQL 15's words: an apostrophe opens no quote
        ("server doesn't support GSSAPI encryption, but it was required", None),
        ("none of the server's SASL authentication mechanisms are supported", None),
        ("couldn't get a connection after 30.00 sec", None),
        ("SSL certificate's name entry is missing", None),
        (
            "authentification par mot de passe échouée pour l'utilisateur  « gw »",
            "authentification par mot de passe échouée pour l'utilisateur  «***»",
        ),
        ('ユーザー"gw"のパスワード認証に失敗しました', 'ユーザー"***"のパスワード認証に失敗しました'),
        ('relation "gw""x" does not exist', 'relation "***" does not exist'),  # " doubled in a name
        ("can't parse date '2026 12 x': bad", "can't parse date '***': bad"),
        ("invalid name: 'a\\'b c'", "invalid name: '***'"),
        # Chinese, Japanese and Korean write no apostrophe in a word: a ' right after their characters opens
        # a quote (it was taken for one, as in can't, and the name showed); Ukrainian and Greek do write one.
        ("角色'gw'不存在", "角色'***'不存在"),
        ("ユーザー'gw'のパスワード認証に失敗しました", "ユーザー'***'のパスワード認証に失敗しました"),
        ("사용자'gw'의 암호 인증을 실패했습니다", "사용자'***'의 암호 인증을 실패했습니다"),
        ("п'ять: x", None),
        ("έναρξη υπηρεσίας κατ' απαίτηση", None),
    ],
    ids=[
        "doesnt",
        "servers",
        "couldnt",
        "certificates",
        "french",
        "japanese",
        "doubled-quote",
        "cant",
        "escaped",
        "chinese-single",
        "japanese-single",
        "korean-single",
        "ukrainian-apostrophe",
        "greek-apostrophe",
    ],
)
def test_an_error_whose_quotes_pair_shows_its_words_and_hides_its_names(said: str, shown: str | None) -> None:
    assert hidden_names(said) == (said if shown is None else shown + HIDDEN_NAMES)


@pytest.mark.parametrize(
    ("said", "shown"),
    [  # Python's repr quotes a value so: a label value in an exception the applier's loop catches
        ("KeyError: 'gpu 7 x'", "KeyError: '***'"),
        ("ValueError: bad label b'gpu 7 x'", "ValueError: bad label b'***'"),
        ("host 'db prod' and user 'gw admin'", "host '***' and user '***'"),
    ],
    ids=["repr", "bytes-repr", "two"],
)
def test_a_single_quoted_value_with_a_space_in_it_is_hidden(said: str, shown: str) -> None:
    assert hidden_names(said) == shown + HIDDEN_NAMES


@pytest.mark.parametrize(
    ("said", "known", "shown"),
    [
        ('FATAL:  role "gw" x "y" does not exist', ('gw" x "y', "db"), 'FATAL:  role "***" does not exist'),
        (
            'for host "db", user "gw", "y", database "d"',
            ('gw", "y', "d"),
            'for host "***", user "***", database "***"',
        ),
        ("Benutzer »gw« x »y« fehlgeschlagen", ("gw« x »y",), "Benutzer »***« fehlgeschlagen"),
    ],
    ids=["words-between", "comma-between", "german"],
)
def test_a_name_of_the_connection_holding_quote_marks_is_hidden_whole(
    said: str, known: tuple[str, ...], shown: str
) -> None:
    """Two quote marks in a user's name pair up as two names, and the words between them showed."""
    assert hidden_names(said, known=known) == shown + HIDDEN_NAMES
