"""Settings from harbor.yml: Harbor's keys mean what they mean in Harbor, the sidecar's own keys
are checked strictly, and settings that cannot work are refused before anything starts."""

from __future__ import annotations

import dataclasses
import textwrap
from urllib.parse import unquote
from urllib.parse import urlsplit

import pytest

from sidecar.config import ConfigError
from sidecar.config import Settings
from sidecar.config import load_settings
from sidecar.config import validate
from sidecar.store.db import open_database


@pytest.fixture
def harbor_yml(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "harbor.yml"
        path.write_text(textwrap.dedent(text))
        return str(path)
    return write


def test_defaults_are_harbors_and_valid():
    settings = load_settings(None)
    assert settings == Settings()
    assert settings.webhook_job_max_retry == 3          # Harbor's harbor.yml default
    assert settings.webhook_job_http_client_timeout == 3.0
    assert settings.max_job_workers == 10
    assert settings.notification_enable is True
    assert settings.hostname == ""
    assert settings.log_level == "info"
    assert settings.database.startswith("sqlite:///")
    validate(settings)


@pytest.mark.parametrize("text", ["", "# nothing here\n", "{}\n"])
def test_an_empty_file_keeps_the_defaults(harbor_yml, text):
    assert load_settings(harbor_yml(text)) == Settings()


def test_harbor_keys_map_onto_settings(harbor_yml):
    settings = load_settings(harbor_yml("""\
        hostname: reg.example.com
        harbor_admin_password: n0t-default
        notification_enable: false
        notification:
          webhook_job_max_retry: 7
          webhook_job_http_client_timeout: 10
        jobservice:
          max_job_workers: 4
        log:
          level: WARNING
        # keys of Harbor's that the sidecar has no use for are ignored
        http:
          port: 80
        data_volume: /data
        trivy:
          ignore_unfixed: false
    """))
    assert settings.hostname == "reg.example.com"
    assert settings.admin_password == "n0t-default"
    assert settings.notification_enable is False
    assert settings.webhook_job_max_retry == 7
    assert settings.webhook_job_http_client_timeout == 10.0
    assert isinstance(settings.webhook_job_http_client_timeout, float)
    assert settings.max_job_workers == 4
    assert settings.log_level == "warning"
    validate(settings)


def test_webhook_job_max_retry_zero_means_four_as_in_harbor(harbor_yml):
    # Harbor passes 0 to gocraft/work, whose default MaxFails is 4
    path = harbor_yml("notification:\n  webhook_job_max_retry: 0\n")
    assert load_settings(path).webhook_job_max_retry == 4


@pytest.mark.parametrize(("external_url", "hostname"), [
    ("https://harbor.example.com", "harbor.example.com"),
    ("https://harbor.example.com:8443", "harbor.example.com:8443"),
    ("http://10.0.0.5:5000/", "10.0.0.5:5000"),
    ("harbor.example.com", "harbor.example.com"),
])
def test_external_url_becomes_the_hostname_and_wins_over_hostname(harbor_yml, external_url,
                                                                   hostname):
    path = harbor_yml(f"hostname: internal.local\nexternal_url: {external_url}\n")
    assert load_settings(path).hostname == hostname


def test_external_database_becomes_a_postgresql_url_with_quoted_credentials(harbor_yml):
    settings = load_settings(harbor_yml("""\
        external_database:
          harbor:
            host: db.example.com
            port: 5433
            db_name: registry
            username: "svc@harbor"
            password: "p@ss:w/rd%?#"
            ssl_mode: disable
    """))
    assert settings.database == (
        "postgresql://svc%40harbor:p%40ss%3Aw%2Frd%25%3F%23@db.example.com:5433/registry"
        "?sslmode=disable")
    parts = urlsplit(settings.database)
    assert (parts.hostname, parts.port, parts.path) == ("db.example.com", 5433, "/registry")
    assert unquote(parts.username) == "svc@harbor"
    assert unquote(parts.password) == "p@ss:w/rd%?#"
    validate(settings)
    # and the driver gets them decoded, with Harbor's ssl_mode
    params = open_database(settings.database).connect_params
    assert params["user"] == "svc@harbor"
    assert params["password"] == "p@ss:w/rd%?#"
    assert params["sslmode"] == "disable"


def test_external_database_defaults_and_no_password(harbor_yml):
    settings = load_settings(harbor_yml("external_database:\n  harbor:\n    host: db\n"))
    assert settings.database == "postgresql://postgres@db:5432/registry"


def test_sidecar_section(harbor_yml):
    settings = load_settings(harbor_yml("""\
        sidecar:
          upstream: http://registry:5000
          bind: 127.0.0.1:9090
          database: sqlite:///var/lib/sidecar.db
          rules: /etc/sidecar/rules.yaml
          workers: 4
          rules_poll_seconds: 1
          upstream_read_timeout: 60
          access_log: true
          delivery:
            backoff_seconds: 0.5
            backoff_max_seconds: 30
    """))
    assert settings.upstream == "http://registry:5000"
    assert settings.bind == "127.0.0.1:9090"
    assert settings.database == "sqlite:///var/lib/sidecar.db"
    assert settings.rules == "/etc/sidecar/rules.yaml"
    assert settings.workers == 4
    assert settings.rules_poll_seconds == 1.0
    assert settings.upstream_read_timeout == 60.0
    assert settings.access_log is True
    assert (settings.backoff_seconds, settings.backoff_max_seconds) == (0.5, 30.0)
    validate(settings)


def test_sidecar_keys_left_empty_keep_their_default(harbor_yml):
    assert load_settings(harbor_yml("sidecar:\n  workers:\n  delivery:\n")) == Settings()


def test_sidecar_database_wins_over_external_database(harbor_yml):
    path = harbor_yml("""\
        external_database:
          harbor: {host: db}
        sidecar:
          database: sqlite:///x.db
    """)
    assert load_settings(path).database == "sqlite:///x.db"


def test_flags_override_the_file_and_none_means_not_given(harbor_yml):
    settings = load_settings(harbor_yml("sidecar:\n  workers: 4\n  bind: 0.0.0.0:1\n"))
    changed = settings.replace(workers=8, bind=None)
    assert (changed.workers, changed.bind) == (8, "0.0.0.0:1")


def test_a_base_is_layered_under_the_file(harbor_yml):
    base = Settings(hostname="from-base", workers=6)
    settings = load_settings(harbor_yml("sidecar:\n  workers: 2\n"), base=base)
    assert (settings.hostname, settings.workers) == ("from-base", 2)


# --- refused ------------------------------------------------------------------------------------

def refused(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def test_unknown_sidecar_key_is_refused_naming_it_and_the_known_ones(harbor_yml):
    path = harbor_yml("sidecar:\n  upstreem: http://x:5000\n")
    message = refused(path)
    assert message.startswith(f"{path}: unknown key sidecar.upstreem (known: ")
    assert "upstream" in message and "bind" in message


def test_unknown_delivery_key_is_refused(harbor_yml):
    path = harbor_yml("sidecar:\n  delivery:\n    max_attempts: 5\n")
    assert refused(path) == (f"{path}: unknown key sidecar.delivery.max_attempts "
                             "(known: auto_disable_after, backoff_max_seconds, backoff_seconds, "
                             "history_per_policy)")


@pytest.mark.parametrize(("text", "message"), [
    ("sidecar:\n  workers: two\n", "sidecar.workers must be int, got 'two'"),
    ("sidecar:\n  workers: 2.5\n", "sidecar.workers must be int, got 2.5"),
    ("sidecar:\n  workers: true\n", "sidecar.workers must be int, got True"),
    ("sidecar:\n  upstream: 5000\n", "sidecar.upstream must be str, got 5000"),
    ("sidecar:\n  access_log: 'yes'\n", "sidecar.access_log must be bool, got 'yes'"),
    ("sidecar:\n  rules_poll_seconds: fast\n", "sidecar.rules_poll_seconds must be float, "
                                                "got 'fast'"),
    ("sidecar:\n  delivery: 5\n", "sidecar.delivery must be dict, got 5"),
    ("sidecar:\n  delivery:\n    backoff_seconds: '1'\n",
     "sidecar.delivery.backoff_seconds must be float, got '1'"),
    ("notification:\n  webhook_job_max_retry: '3'\n",
     "notification.webhook_job_max_retry must be int, got '3'"),
    ("notification:\n  webhook_job_max_retry: 3.0\n",
     "notification.webhook_job_max_retry must be int, got 3.0"),
    ("notification:\n  webhook_job_http_client_timeout: 3s\n",
     "notification.webhook_job_http_client_timeout must be float, got '3s'"),
    ("jobservice:\n  max_job_workers: false\n",
     "jobservice.max_job_workers must be int, got False"),
    ("notification_enable: 'no'\n", "notification_enable must be bool, got 'no'"),
    ("sidecar: [upstream]\n", "sidecar must be a mapping"),
    ("notification: true\n", "notification must be a mapping, got True"),
    ("jobservice: 10\n", "jobservice must be a mapping, got 10"),
    ("log: info\n", "log must be a mapping, got 'info'"),
    ("external_database: postgres\n", "external_database must be a mapping, got 'postgres'"),
    ("external_database:\n  harbor: postgresql://x\n",
     "external_database.harbor must be a mapping"),
    ("external_database:\n  harbor:\n    port: fivefourthreetwo\n", "external_database.harbor: "),
])
def test_wrong_types_are_refused_with_the_key(harbor_yml, text, message):
    path = harbor_yml(text)
    assert refused(path).startswith(f"{path}: {message}")


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n- b\n", "must be a mapping"),
    ("hostname: [unclosed\n", "not valid YAML"),
])
def test_broken_files_are_refused(harbor_yml, text, message):
    path = harbor_yml(text)
    assert refused(path).startswith(f"{path}: {message}")


def test_missing_file_is_refused(tmp_path):
    path = tmp_path / "absent.yml"
    assert refused(str(path)) == f"{path}: cannot read: No such file or directory"


@pytest.mark.parametrize(("changes", "message"), [
    (dict(upstream="registry:5000"), "upstream must be an http(s) URL, got 'registry:5000'"),
    (dict(upstream="ftp://registry:5000"), "upstream must be an http(s) URL"),
    (dict(upstream="http://"), "upstream must be an http(s) URL"),
    (dict(bind="8080"), "bind must be HOST:PORT, got '8080'"),
    (dict(bind=":8080"), "bind must be HOST:PORT"),
    (dict(bind="0.0.0.0:http"), "bind must be HOST:PORT"),
    (dict(workers=0), "workers must be at least 1"),
    (dict(max_job_workers=0), "jobservice.max_job_workers must be at least 1"),
    (dict(webhook_job_http_client_timeout=0.0),
     "notification.webhook_job_http_client_timeout must be positive"),
    (dict(backoff_seconds=-1.0), "delivery.backoff_seconds must be >= 0"),
    (dict(backoff_seconds=10.0, backoff_max_seconds=5.0), "delivery.backoff_seconds must be"),
    (dict(database="mysql://x/y"), "database must be sqlite:///PATH or postgresql://..."),
    (dict(database="/data/sidecar.db"), "database must be sqlite:///PATH"),
    (dict(log_level="verbose"), "log.level must be one of debug, info, warning, error, fatal"),
])
def test_validate_refuses_settings_that_cannot_work(changes, message):
    with pytest.raises(ConfigError) as info:
        validate(dataclasses.replace(Settings(), **changes))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("changes", [
    dict(upstream="https://registry.example.com"),
    dict(bind="[::]:8080"),
    dict(database="postgres://u@db/x"),
    dict(database="postgresql://u:p@db:5432/x"),
    dict(backoff_seconds=0.0, backoff_max_seconds=0.0),
    dict(log_level="debug"),
    dict(log_level="fatal"),
])
def test_validate_accepts_usable_settings(changes):
    validate(dataclasses.replace(Settings(), **changes))


def test_log_level_from_harbor_yml_is_validated(harbor_yml):
    settings = load_settings(harbor_yml("log:\n  level: Verbose\n"))
    with pytest.raises(ConfigError, match="log.level must be one of"):
        validate(settings)


def test_private_network_access_is_allowed_by_default_as_in_harbor():
    settings = load_settings(None)
    assert settings.allow_private_network_access is True
    assert settings.webhook_allowed_networks == ()


def test_harbors_network_key_and_the_allowed_networks(harbor_yml):
    settings = load_settings(harbor_yml("""\
        network:
          allow_private_network_access: false
        sidecar:
          webhook_allowed_networks: [10.20.0.0/16, "fd00::/8", 192.168.1.7]
    """))
    assert settings.allow_private_network_access is False
    assert settings.webhook_allowed_networks == ("10.20.0.0/16", "fd00::/8", "192.168.1.7")


@pytest.mark.parametrize(("text", "message"), [
    ("network:\n  allow_private_network_access: 'no'\n",
     "network.allow_private_network_access must be bool, got 'no'"),
    ("network: [allow_private_network_access]\n", "network must be a mapping"),
    ("sidecar:\n  webhook_allowed_networks: 10.0.0.0/8\n",
     "sidecar.webhook_allowed_networks must be list, got '10.0.0.0/8'"),
    ("sidecar:\n  webhook_allowed_networks: [10.0.0.0/33]\n",
     "sidecar.webhook_allowed_networks: '10.0.0.0/33' is not a CIDR network"),
    ("sidecar:\n  webhook_allowed_networks: [10.1.2.3/8]\n",
     "sidecar.webhook_allowed_networks: '10.1.2.3/8' is not a CIDR network"),
    ("sidecar:\n  webhook_allowed_networks: [intranet]\n",
     "sidecar.webhook_allowed_networks: 'intranet' is not a CIDR network"),
])
def test_bad_network_settings_are_refused(harbor_yml, text, message):
    path = harbor_yml(text)
    assert refused(path).startswith(f"{path}: {message}")


def test_admin_surface_keys(harbor_yml):
    defaults = load_settings(None)
    assert (defaults.public_status, defaults.metrics_auth, defaults.trusted_proxies) == \
        (False, False, ())
    assert defaults.default_password
    settings = load_settings(harbor_yml("""\
        harbor_admin_password: not-the-default
        sidecar:
          public_status: true
          metrics_auth: true
          trusted_proxies: [127.0.0.1/32, "fd00::/8"]
    """))
    assert (settings.public_status, settings.metrics_auth, settings.trusted_proxies) == \
        (True, True, ("127.0.0.1/32", "fd00::/8"))
    assert not settings.default_password


@pytest.mark.parametrize(("text", "message"), [
    ("sidecar:\n  trusted_proxies: [10.0.0.0/33]\n",
     "sidecar.trusted_proxies: '10.0.0.0/33' is not a CIDR network"),
    ("sidecar:\n  trusted_proxies: [lb.internal]\n",
     "sidecar.trusted_proxies: 'lb.internal' is not a CIDR network"),
    ("sidecar:\n  trusted_proxies: 10.0.0.0/8\n", "sidecar.trusted_proxies must be list"),
    ("sidecar:\n  public_status: 'yes'\n", "sidecar.public_status must be bool"),
    ("sidecar:\n  metrics_auth: 1\n", "sidecar.metrics_auth must be bool"),
])
def test_bad_admin_surface_keys_are_refused(harbor_yml, text, message):
    path = harbor_yml(text)
    assert refused(path).startswith(f"{path}: {message}")


@pytest.mark.parametrize(("value", "seconds"), [
    ("5d", 5 * 86400.0), ("12h", 43200.0), ("90", 90.0), (3600, 3600.0), (0, 0.0), ("1w", 604800.0),
])
def test_auto_disable_after_is_a_duration(harbor_yml, value, seconds):
    settings = load_settings(harbor_yml(
        f"sidecar:\n  delivery:\n    auto_disable_after: {value!r}\n"
        "    history_per_policy: 20\n"))
    assert settings.auto_disable_after == seconds and settings.history_per_policy == 20
    assert load_settings(None).auto_disable_after == 5 * 86400.0
    assert load_settings(None).history_per_policy == 50


@pytest.mark.parametrize(("text", "message"), [
    ("auto_disable_after: 5 days", "sidecar.delivery.auto_disable_after must be a duration "
     "such as 5d, 12h, 30m or a number of seconds, got '5 days'"),
    ("auto_disable_after: -1", "sidecar.delivery.auto_disable_after must be 0 (never) or more"),
    ("auto_disable_after: true", "sidecar.delivery.auto_disable_after must be a duration"),
    ("history_per_policy: many", "sidecar.delivery.history_per_policy must be int"),
])
def test_bad_endpoint_health_keys_are_refused(harbor_yml, text, message):
    path = harbor_yml(f"sidecar:\n  delivery:\n    {text}\n")
    assert refused(path).startswith(f"{path}: {message}")


def test_negative_history_cap_is_refused():
    with pytest.raises(ConfigError, match="history_per_policy must be 0"):
        validate(Settings(history_per_policy=-1))


def test_values_name_environment_variables_like_the_rules_file(harbor_yml):
    path = harbor_yml("""\
        harbor_admin_password: ${ADMIN_PASSWORD}
        external_database:
          harbor:
            host: ${DB_HOST:-db.internal}
            password: ${DB_PASSWORD}
        sidecar:
          upstream: http://registry:5000
          webhook_allowed_networks: ["${CIDR}"]
          rules: /etc/cost-$$5.yaml
    """)
    settings = load_settings(path, environ={"ADMIN_PASSWORD": "s3cret", "DB_PASSWORD": "p@ss",
                                            "CIDR": "10.0.0.0/8"})
    assert settings.admin_password == "s3cret"
    assert settings.database == "postgresql://postgres:p%40ss@db.internal:5432/registry"
    assert settings.webhook_allowed_networks == ("10.0.0.0/8",)
    assert settings.rules == "/etc/cost-$5.yaml"


def test_an_unset_variable_is_refused_naming_key_and_variable(harbor_yml):
    path = harbor_yml("harbor_admin_password: ${ADMIN_PASSWORD}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value) == (
        f"{path}: harbor_admin_password: environment variable ADMIN_PASSWORD is not set "
        "(write ${ADMIN_PASSWORD:-default} for an optional one)")


# --- the sidecar's registry credential ----------------------------------------------------------

def test_registry_credential_reads_variables_from_the_environment(harbor_yml, monkeypatch):
    monkeypatch.setenv("REG_USER", "sidecar-bot")
    monkeypatch.setenv("REG_PASSWORD", "pw-from-env-3c1")
    path = harbor_yml("""\
        sidecar:
          registry_credential:
            username: ${REG_USER}
            password: ${REG_PASSWORD}
        """)
    credential = load_settings(path).registry_credential
    assert (credential.username, credential.password) == ("sidecar-bot", "pw-from-env-3c1")
    assert "pw-from-env" not in repr(load_settings(path))
    # expanded once, with the rest of the file: `$$` is a `$`, a value from the environment is
    # taken as it is
    monkeypatch.setenv("REG_PASSWORD", "has-${DOLLAR}-inside")
    path = harbor_yml("sidecar:\n  registry_credential: {username: bot, password: "
                      "'pa$$word-${REG_PASSWORD}'}\n")
    assert load_settings(path).registry_credential.password == "pa$word-has-${DOLLAR}-inside"


def test_no_registry_credential_by_default(harbor_yml):
    assert load_settings(None).registry_credential is None
    assert load_settings(harbor_yml("sidecar:\n  registry_credential:\n")).registry_credential \
        is None


@pytest.mark.parametrize(("text", "message"), [
    ("registry_credential: 'bot:pw-SECRET-1'",
     "sidecar.registry_credential must be a mapping with username and password"),
    ("registry_credential: {username: bot}", "sidecar.registry_credential.password is missing"),
    ("registry_credential: {username: bot, password: 12345}",
     "sidecar.registry_credential.password must be a string (quote it in YAML)"),
    ("registry_credential: {username: bot, password: '', extra: pw-SECRET-1}",
     "sidecar.registry_credential: unknown key extra (known: username, password)"),
    ("registry_credential: {username: bot, password: ''}",
     "sidecar.registry_credential.password is empty"),
    ("registry_credential: {username: 'a:b', password: pw-SECRET-1}",
     "sidecar.registry_credential.username must not contain ':'"),
    ("registry_credential: {username: bot, password: '${UNSET_SIDECAR_PW}'}",
     "sidecar.registry_credential.password: environment variable UNSET_SIDECAR_PW is not set"),
])
def test_a_bad_registry_credential_is_refused_without_quoting_it(harbor_yml, monkeypatch,
                                                                 text, message):
    monkeypatch.delenv("UNSET_SIDECAR_PW", raising=False)
    path = harbor_yml(f"sidecar:\n  {text}\n")
    refusal = refused(path)
    assert refusal.startswith(f"{path}: {message}")
    assert "SECRET" not in refusal


def test_unmatched_events_are_not_stored_unless_asked_for(harbor_yml):
    assert load_settings(None).record_unmatched_events is False
    settings = load_settings(harbor_yml("sidecar:\n  record_unmatched_events: true\n"))
    assert settings.record_unmatched_events is True
    path = harbor_yml("sidecar:\n  record_unmatched_events: 1\n")
    assert refused(path).startswith(f"{path}: sidecar.record_unmatched_events must be bool")
