"""Settings: harbor.yml's keys where Harbor has one, the sidecar's own under `sidecar:`.

Precedence: built-in defaults < harbor.yml < command-line flags. Unknown keys in the sidecar
section are refused (a typo must not silently fall back to a default). String values may name
environment variables as the rules file does (`${VAR}`, `${VAR:-default}`, `$$` for `$`), so
passwords can come from a secret store or env file instead of the file itself.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from urllib.parse import urlsplit

import yaml

from sidecar.registry.credential import Credential
from sidecar.rules.load import expand_env

HARBOR_DEFAULT_PASSWORD = "Harbor12345"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class Settings:
    hostname: str = ""
    upstream: str = "http://127.0.0.1:5000"
    bind: str = "0.0.0.0:8080"
    database: str = "sqlite:///data/sidecar.db"
    rules: str = ""
    workers: int = 2
    max_job_workers: int = 10
    webhook_job_max_retry: int = 3
    webhook_job_http_client_timeout: float = 3.0
    backoff_seconds: float = 15.0
    backoff_max_seconds: float = 900.0
    notification_enable: bool = True
    admin_password: str = "Harbor12345"  # Harbor's published default: see default_password
    log_level: str = "info"
    rules_poll_seconds: float = 2.0
    upstream_read_timeout: float = 300.0
    access_log: bool = False
    # the gunicorn worker: "sidecar" (ours: a lean loop for the proxied paths) or "gunicorn"
    # (gunicorn's stock gevent worker, a fallback)
    http_worker: str = "sidecar"
    # answer blob GETs with a 307 to this registry address (reachable by clients): blob bytes
    # then never cross the sidecar ("" = proxy them)
    blob_redirect: str = ""
    # finished deliveries and events older than this are deleted (0: keep everything)
    retention_days: float = 14.0
    retention_sweep_seconds: float = 600.0
    # store events no policy wants too (debugging inference); default: only events with
    # deliveries are rows, so a busy registry's pulls cost no write
    record_unmatched_events: bool = False
    # Helm charts: a ChartMuseum-compatible server, its --depth, the project of depth-0 routes,
    # and how much of an upload is read to find its Chart.yaml
    chart_upstream: str = ""
    chart_depth: int = 0
    chart_project: str = "library"
    chart_inspect_bytes: int = 8 * 1024 * 1024
    # background jobs (scans, replication tasks, retention runs): concurrent jobs per worker
    # process, their lease (renewed while they run), and the backoff between attempts
    job_workers: int = 4
    job_lease_seconds: float = 60.0
    job_backoff_seconds: float = 10.0
    job_backoff_max_seconds: float = 600.0
    # Harbor's network.allow_private_network_access: False refuses webhook (and Slack, and test
    # endpoint) targets at loopback, private, link-local... addresses, except in these CIDRs
    allow_private_network_access: bool = True
    webhook_allowed_networks: tuple[str, ...] = ()
    # the sidecar's own identity toward the upstream (pre-delete lookups, ...); None: fall back
    # to the client's Authorization for lookups and to anonymous elsewhere
    registry_credential: Credential | None = None
    # scanning: how long one artifact's scan may take (submit to report), and the registry
    # URL handed to scanner adapters ("" = the upstream, so their pulls fire no events)
    scan_timeout_seconds: float = 600.0
    scan_registry_url: str = ""
    # admin surfaces: /sidecar/status open to anyone (default: the admin only), /sidecar/metrics
    # behind the admin (default: open), and the front proxies whose X-Forwarded-For and
    # X-Forwarded-Proto are believed (CIDRs; default: none)
    public_status: bool = False
    metrics_auth: bool = False
    trusted_proxies: tuple[str, ...] = ()
    # endpoint health: a target whose deliveries all failed for this long is disabled
    # (seconds; 0 = never; Svix's 5 days), and each policy keeps its newest N executions
    # (Harbor's 50; 0 = no cap, only retention_days)
    auto_disable_after: float = 5 * 86400.0
    history_per_policy: int = 50

    @property
    def default_password(self) -> bool:
        """harbor_admin_password is still Harbor's published default: the API, UI and status
        then answer only loopback clients (api.guard), and `sidecar serve` warns."""
        return self.admin_password == HARBOR_DEFAULT_PASSWORD

    @property
    def scan_registry(self) -> str:
        """The registry URL scanner adapters pull from."""
        return (self.scan_registry_url or self.upstream).rstrip("/")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


_SIDECAR_KEYS = {
    "upstream": str, "bind": str, "database": str, "rules": str, "workers": int,
    "rules_poll_seconds": float, "upstream_read_timeout": float, "access_log": bool,
    "delivery": dict, "chart_upstream": str, "chart_depth": int, "chart_project": str,
    "chart_inspect_bytes": int, "retention_days": float, "retention_sweep_seconds": float,
    "jobs": dict,
    "webhook_allowed_networks": list,
    "registry_credential": dict, "scan": dict,
    "http_worker": str,
    "blob_redirect": str,
    "public_status": bool, "metrics_auth": bool, "trusted_proxies": list,
    "record_unmatched_events": bool,
}
HTTP_WORKERS = ("sidecar", "gunicorn")
#: harbor.yml's levels; Python's logging knows each name.
LOG_LEVELS = ("debug", "info", "warning", "error", "fatal", "critical")
_DELIVERY_KEYS = {"backoff_seconds": float, "backoff_max_seconds": float,
                  "auto_disable_after": object, "history_per_policy": int}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'90s', '10m', '2h', '5d', '1w' (a bare number is seconds) -> seconds."""
    match = _DURATION.match(str(text).lower())
    if not match:
        raise ValueError(f"bad duration {text!r}: use a number with s, m, h, d or w, e.g. 10m")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _duration(value: Any, where: str) -> float:
    """A duration key: seconds as a number, or a string such as "5d" or "12h"."""
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a duration such as 5d, 12h or seconds, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise ConfigError(f"{where} must be a duration such as 5d, 12h, 30m or a number "
                              f"of seconds, got {value!r}") from None
    if seconds < 0:
        raise ConfigError(f"{where} must be 0 (never) or more, got {value!r}")
    return seconds
_JOBS_KEYS = {"workers": int, "lease_seconds": float, "backoff_seconds": float,
              "backoff_max_seconds": float}
_SCAN_KEYS = {"timeout_seconds": float, "registry_url": str}
#: sidecar.<section>: (its keys and types, the prefix of their Settings field names)
_SUBSECTIONS: dict[str, tuple[dict[str, type], str]] = {
    "delivery": (_DELIVERY_KEYS, ""),
    "jobs": (_JOBS_KEYS, "job_"),
    "scan": (_SCAN_KEYS, "scan_"),
}


def _typed(value: Any, kind: type, where: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    if kind is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, kind):
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def load_settings(path: str | None, base: Settings | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read harbor.yml at `path` (None: defaults only); `${VAR}` from `environ` (os.environ)."""
    settings = base or Settings()
    if not path:
        return settings
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping")
    raw = _expand(raw, path, os.environ if environ is None else environ, ())
    return settings.replace(**_from_mapping(raw, path))


def _expand(value: Any, path: str, environ: Mapping[str, str], where: tuple[str, ...]) -> Any:
    """`${VAR}` in every string value; a variable neither set nor defaulted is an error."""
    if isinstance(value, dict):
        return {k: _expand(v, path, environ, (*where, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path, environ, (*where, str(i))) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    text, missing = expand_env(value, environ)
    if missing:
        raise ConfigError(f"{path}: {'.'.join(where)}: environment variable "
                          f"{missing[0]} is not set (write ${{{missing[0]}:-default}} "
                          f"for an optional one)")
    return text


def _from_mapping(raw: dict[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "hostname" in raw and raw["hostname"] is not None:
        out["hostname"] = str(raw["hostname"])
    if "external_url" in raw and raw["external_url"]:
        out["hostname"] = urlsplit(str(raw["external_url"])).netloc or str(raw["external_url"])
    if "harbor_admin_password" in raw:
        out["admin_password"] = str(raw["harbor_admin_password"])
    if "notification_enable" in raw:
        out["notification_enable"] = _typed(raw["notification_enable"], bool,
                                             f"{path}: notification_enable")
    notification = _section(raw, "notification", path)
    if "webhook_job_max_retry" in notification:
        value = _typed(notification["webhook_job_max_retry"], int,
                       f"{path}: notification.webhook_job_max_retry")
        out["webhook_job_max_retry"] = value if value > 0 else 4  # Harbor: 0 means gocraft's 4
    if "webhook_job_http_client_timeout" in notification:
        out["webhook_job_http_client_timeout"] = _typed(
            notification["webhook_job_http_client_timeout"], float,
            f"{path}: notification.webhook_job_http_client_timeout")
    jobservice = _section(raw, "jobservice", path)
    if "max_job_workers" in jobservice:
        out["max_job_workers"] = _typed(jobservice["max_job_workers"], int,
                                        f"{path}: jobservice.max_job_workers")
    log_section = _section(raw, "log", path)
    if "level" in log_section:
        out["log_level"] = str(log_section["level"]).lower()
    network = _section(raw, "network", path)
    if "allow_private_network_access" in network:
        out["allow_private_network_access"] = _typed(
            network["allow_private_network_access"], bool,
            f"{path}: network.allow_private_network_access")
    external = _section(raw, "external_database", path).get("harbor")
    if external:
        if not isinstance(external, dict):
            raise ConfigError(f"{path}: external_database.harbor must be a mapping")
        out["database"] = _postgres_url(external, path)
    sidecar = raw.get("sidecar") or {}
    if not isinstance(sidecar, dict):
        raise ConfigError(f"{path}: sidecar must be a mapping")
    for key, value in sidecar.items():
        if key not in _SIDECAR_KEYS:
            known = ", ".join(sorted(_SIDECAR_KEYS))
            raise ConfigError(f"{path}: unknown key sidecar.{key} (known: {known})")
        if value is None:
            continue
        if key in _SUBSECTIONS:
            keys, prefix = _SUBSECTIONS[key]
            for sub, sub_value in _typed(value, dict, f"{path}: sidecar.{key}").items():
                if sub not in keys:
                    raise ConfigError(f"{path}: unknown key sidecar.{key}.{sub} "
                                      f"(known: {', '.join(sorted(keys))})")
                if keys[sub] is object:  # a duration
                    out[prefix + sub] = _duration(sub_value, f"{path}: sidecar.{key}.{sub}")
                    continue
                out[prefix + sub] = _typed(sub_value, keys[sub], f"{path}: sidecar.{key}.{sub}")
            continue
        if key in ("webhook_allowed_networks", "trusted_proxies"):
            out[key] = _networks(_typed(value, list, f"{path}: sidecar.{key}"), path, key)
            continue
        if key == "registry_credential":
            out[key] = _credential(value, f"{path}: sidecar.registry_credential")
            continue
        out[key] = _typed(value, _SIDECAR_KEYS[key], f"{path}: sidecar.{key}")
    return out


def _networks(values: list[Any], path: str, key: str) -> tuple[str, ...]:
    """CIDRs, each checked here so a typo stops the start instead of allowing nothing."""
    for value in values:
        try:
            ipaddress.ip_network(str(value).strip(), strict=True)
        except ValueError as exc:
            raise ConfigError(f"{path}: sidecar.{key}: {value!r} is not a "
                              f"CIDR network such as 10.0.0.0/8 or fd00::/8 ({exc})") from None
    return tuple(str(value).strip() for value in values)


def _credential(value: Any, where: str) -> Credential:
    """{username, password} (`${VAR}` already expanded with the rest of the file); no message
    ever quotes a value."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping with username and password")
    unknown = sorted(str(k) for k in value if k not in ("username", "password"))
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(unknown)} "
                          "(known: username, password)")
    found: dict[str, str] = {}
    for key in ("username", "password"):
        text = value.get(key)
        if text is None:
            raise ConfigError(f"{where}.{key} is missing")
        if not isinstance(text, str):
            raise ConfigError(f"{where}.{key} must be a string (quote it in YAML)")
        if not text:
            raise ConfigError(f"{where}.{key} is empty")
        found[key] = text
    if ":" in found["username"]:
        raise ConfigError(f"{where}.username must not contain ':' (Basic auth cannot carry it)")
    return Credential(found["username"], found["password"])


def _section(raw: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    section = raw.get(key) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: {key} must be a mapping, got {section!r}")
    return section


def _postgres_url(section: dict[str, Any], path: str) -> str:
    try:
        host = section.get("host", "127.0.0.1")
        port = int(section.get("port", 5432))
        name = section.get("db_name", "registry")
        user = quote(str(section.get("username", "postgres")), safe="")
        password = section.get("password")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: external_database.harbor: {exc}") from exc
    auth = f"{user}:{quote(str(password), safe='')}" if password else user
    ssl_mode = section.get("ssl_mode")
    query = f"?sslmode={quote(str(ssl_mode), safe='')}" if ssl_mode else ""
    return f"postgresql://{auth}@{host}:{port}/{quote(str(name), safe='')}{query}"


def validate(settings: Settings) -> None:
    """Refuse settings that cannot work, before any worker starts."""
    parts = urlsplit(settings.upstream)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"upstream must be an http(s) URL, got {settings.upstream!r}")
    host, _, port = settings.bind.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"bind must be HOST:PORT, got {settings.bind!r}")
    if settings.log_level not in LOG_LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}, "
                          f"got {settings.log_level!r}")
    if settings.workers < 1:
        raise ConfigError("workers must be at least 1")
    if settings.blob_redirect:
        redirect = urlsplit(settings.blob_redirect)
        if redirect.scheme not in ("http", "https") or not redirect.hostname \
                or redirect.path.strip("/") or redirect.query:
            raise ConfigError(f"blob_redirect must be an http(s) URL of the registry's root, "
                              f"got {settings.blob_redirect!r}")
    if settings.http_worker not in HTTP_WORKERS:
        raise ConfigError(f"http_worker must be one of {', '.join(HTTP_WORKERS)}, "
                          f"got {settings.http_worker!r}")
    if settings.chart_upstream:
        chart = urlsplit(settings.chart_upstream)
        if chart.scheme not in ("http", "https") or not chart.hostname:
            raise ConfigError(f"chart_upstream must be an http(s) URL, "
                              f"got {settings.chart_upstream!r}")
    if settings.chart_depth < 0:
        raise ConfigError("chart_depth must be 0 or more")
    if not settings.chart_project or "/" in settings.chart_project:
        raise ConfigError(f"chart_project must be a project name, got {settings.chart_project!r}")
    if settings.chart_inspect_bytes < 1024:
        raise ConfigError("chart_inspect_bytes must be at least 1024")
    if settings.max_job_workers < 1:
        raise ConfigError("jobservice.max_job_workers must be at least 1")
    if settings.webhook_job_http_client_timeout <= 0:
        raise ConfigError("notification.webhook_job_http_client_timeout must be positive")
    if settings.backoff_seconds < 0 or settings.backoff_max_seconds < settings.backoff_seconds:
        raise ConfigError("delivery.backoff_seconds must be >= 0 and <= backoff_max_seconds")
    if not settings.database.startswith(("sqlite:", "postgres:", "postgresql:")):
        raise ConfigError(f"database must be sqlite:///PATH or postgresql://..., "
                          f"got {settings.database!r}")
    if settings.history_per_policy < 0:
        raise ConfigError("sidecar.delivery.history_per_policy must be 0 (no cap) or more")
    if settings.auto_disable_after < 0:
        raise ConfigError("sidecar.delivery.auto_disable_after must be 0 (never) or more")
    if settings.retention_days < 0:
        raise ConfigError("sidecar.retention_days must be >= 0 (0 keeps everything)")
    if settings.retention_sweep_seconds <= 0:
        raise ConfigError("sidecar.retention_sweep_seconds must be positive")
    if settings.job_workers < 1:
        raise ConfigError("sidecar.jobs.workers must be at least 1")
    if settings.job_lease_seconds < 5:
        raise ConfigError("sidecar.jobs.lease_seconds must be at least 5")
    if settings.job_backoff_seconds < 0 or settings.job_backoff_max_seconds < \
            settings.job_backoff_seconds:
        raise ConfigError("sidecar.jobs.backoff_seconds must be >= 0 and <= backoff_max_seconds")
    if settings.scan_timeout_seconds <= 0:
        raise ConfigError("sidecar.scan.timeout_seconds must be positive")
    if settings.scan_registry_url:
        scan = urlsplit(settings.scan_registry_url)
        if scan.scheme not in ("http", "https") or not scan.hostname:
            raise ConfigError(f"sidecar.scan.registry_url must be an http(s) URL, "
                              f"got {settings.scan_registry_url!r}")
        if scan.username is not None:
            raise ConfigError("sidecar.scan.registry_url must not carry credentials: use "
                              "sidecar.registry_credential")
