"""Alerts without Prometheus: Slack-compatible webhooks (`{"text": …}`) told about a failed
run, about new dead letters, and about a source whose freshness is over a threshold
(config `alerts:`, docs/configuration.md).

Why here, and why like this:

* A failed run is told once, by the task that finishes it (the run's one finisher).
* New dead letters are *counted* as they are written (`DeadLetterStore` calls `note_dead_letter`
  for an id it did not hold), and *sent* where work ends — a run's finish, a real-time
  sync — at most once per source per `debounce_seconds` (a Redis gate with that TTL):
  a batch of 100 refusals is one message, not 100, and what arrives inside the window is
  added to the next one.
* Freshness is measured by a beat entry (`alerts:freshness`, every minute, only with
  `alerts.freshness_seconds`), told at most once per source per `debounce_seconds`.
* Sending never fails the caller: every error is logged (without the URL's path or query,
  where webhook tokens live) and counted in `alerts:stats` (`sent`, `failed`).
* The URLs pass the SSRF guard of DAM downloads (`connector.dam.media.SafeDownloader`):
  http(s) only, no metadata endpoint, and a host that resolves to a loopback/private
  address only when listed in `alerts.allowed_private_hosts`; the post goes to an address
  that check passed (`SafeDownloader.send`: no DNS-rebinding window). Redirects are not
  followed.
* No secret in a body: every `${VAR}` secret of the config is masked out of the text.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from connector.config.model import AlertsConfig, Config, SourceConfig
from connector.dam.media import MediaRefusedError, Resolver, SafeDownloader, normalise_host
from connector.http_session import PooledSession
from connector.redis_conn import Keys
from connector.settings import Secret

log = logging.getLogger(__name__)

MAX_TEXT = 1500
RUN_TOLD_TTL = 7 * 24 * 3600  # a run's failure is told once
MASK = "********"

#: (url, JSON body, timeout) → HTTP status; replaces the pinned post (tests)
Poster = Callable[[str, bytes, float], int]


def secret_values(value: Any) -> Iterator[str]:
    """Every Secret held anywhere in a config object (dataclasses, tuples, dicts)."""
    if isinstance(value, Secret):
        yield value.reveal()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from secret_values(getattr(value, f.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from secret_values(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from secret_values(item)


def origin(url: str) -> str:
    """`scheme://host[:port]`: how a webhook is named in logs (its path holds its token)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


class Alerts:
    """The webhooks of one deployment; every method is safe to call from any task."""

    def __init__(
        self,
        config: AlertsConfig,
        redis_client: Any,
        keys: Keys,
        *,
        secrets: Iterable[str] = (),
        resolver: Resolver | None = None,
        poster: Poster | None = None,
    ) -> None:
        self.config = config
        self.redis = redis_client
        self.keys = keys
        self._urls = [w.reveal() for w in config.webhooks]
        masked = {*secrets, *self._urls}
        self._secrets = sorted((v for v in masked if len(v) >= 4), key=len, reverse=True)
        self._private = frozenset(normalise_host(h) for h in config.allowed_private_hosts)
        self._resolver = resolver
        self._poster = poster

    @property
    def enabled(self) -> bool:
        return bool(self._urls)

    # ------------------------------------------------------------------ events

    def run_failed(self, source: str, run_id: str, error: str | None) -> None:
        """A run ended `failed`: told at once, once (a replayed finisher sends nothing)."""
        try:
            if not self.redis.set(self._key("run", run_id), "1", nx=True, ex=RUN_TOLD_TTL):
                return
        except Exception:
            log.exception("alerts: could not record the alert of run %s", run_id)
        reason = (error or "no error recorded").strip()
        self.send(f"[{self.keys.namespace}] run {run_id} of source {source} failed: {reason}")

    def note_dead_letter(self, source: str, count: int = 1) -> None:
        """`count` new dead letters of `source`: counted now, told by `flush_dead_letters`."""
        if self.enabled and count > 0:
            self.redis.incrby(self._key("dead", source, "new"), count)

    def flush_dead_letters(self, source: str, total: int | None = None) -> None:
        """Tell the dead letters counted since the last message, unless one was sent for
        this source less than `debounce_seconds` ago (they wait for the next flush)."""
        if not self.enabled:
            return
        try:
            pending = int(self.redis.get(self._key("dead", source, "new")) or 0)
            if pending <= 0:
                return
            window = round(self.config.debounce_seconds)
            if window > 0 and not self.redis.set(self._key("dead", source, "gate"), "1",
                                                 nx=True, ex=window):
                return
            new = int(self.redis.getdel(self._key("dead", source, "new")) or 0)
        except Exception:  # the alerts never fail the work they report on
            log.exception("alerts: could not read the dead-letter count of %s", source)
            return
        if new <= 0:
            return
        letters = "dead letter" if new == 1 else "dead letters"
        in_all = f" ({total} in all)" if total is not None else ""
        self.send(f"[{self.keys.namespace}] source {source}: {new} new {letters}{in_all}; "
                  f"see `connector failures list {source}`")

    def check_freshness(self, sources: Iterable[SourceConfig],
                        now: float | None = None) -> dict[str, float]:
        """The sources whose freshness is over `freshness_seconds` → their age; each is
        told at most once per `debounce_seconds` while it stays over.

        Freshness is `connector_freshness_seconds`'s definition (docs/operations.md,
        Metrics): the age of the oldest intake event waiting for a flush and, for a source
        with a `schedule` (only a scheduled sync catches up by itself), the time since its
        watermark — DAM changes after it are not known to be in the PIM."""
        threshold = self.config.freshness_seconds
        if not self.enabled or not threshold:
            return {}
        now = time.time() if now is None else now
        over: dict[str, float] = {}
        for source in sources:
            try:
                age = self._freshness(source, now)
                if age <= threshold:
                    continue
                over[source.name] = age
                window = round(self.config.debounce_seconds)
                if window > 0 and not self.redis.set(
                        self._key("fresh", source.name, "gate"), "1", nx=True, ex=window):
                    continue
            except Exception:
                log.exception("alerts: could not measure the freshness of %s", source.name)
                continue
            self.send(f"[{self.keys.namespace}] source {source.name}: the oldest DAM change "
                      f"not yet in the PIM is {_human(age)} old (alerts.freshness_seconds: "
                      f"{_human(threshold)}); see `connector status {source.name}`")
        return over

    def _freshness(self, source: SourceConfig, now: float) -> float:
        from connector.intake.store import IntakeStore
        from connector.metrics.collector import freshness_age
        from connector.pipeline.runs.record import parse_time

        pending = IntakeStore(self.redis, self.keys, source.name, source.realtime).pending_key
        oldest = self.redis.zrange(pending, 0, 0, withscores=True)
        raw = self.redis.get(self.keys.of("watermark", source.name))
        mark = parse_time(raw.decode() if isinstance(raw, bytes) else raw) if raw else None
        return freshness_age(now, float(oldest[0][1]) if oldest else None,
                             mark.timestamp() if mark is not None else None,
                             source.schedule is not None)

    # ------------------------------------------------------------------ sending

    def send(self, text: str) -> int:
        """Post `text` to every webhook; the number that took it (2xx). Never raises."""
        body = json.dumps({"text": self.mask(text)[:MAX_TEXT]}).encode()
        sent = 0
        for url in self._urls:
            shown = origin(url)
            try:
                status = self._post(url, body)
            except MediaRefusedError as exc:
                self._failed(f"alert to {shown} refused: {self.mask(str(exc))}")
                continue
            except Exception as exc:  # connection refused, timeout, anything
                self._failed(f"alert to {shown} not sent: {type(exc).__name__}: "
                             f"{self.mask(str(exc))}")
                continue
            if 200 <= status < 300:
                sent += 1
                self._count("sent")
            else:
                self._failed(f"alert to {shown} answered {status}")
        return sent

    def mask(self, text: str) -> str:
        """`text` with every secret of the config (and every webhook URL) masked."""
        for url in self._urls:
            text = text.replace(url, origin(url))
            parts = urlsplit(url)
            if parts.path not in ("", "/"):
                text = text.replace(parts.path, "/" + MASK)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def _post(self, url: str, body: bytes) -> int:
        """Check `url` with the guard and post `body` to an address the check passed."""
        guard = self._guard(url)
        try:
            if self._poster is not None:
                guard.check_url(url)
                return self._poster(url, body, self.config.timeout)
            with PooledSession(pool_maxsize=1) as http:
                response = guard.send(http, "POST", url, data=body,
                                      headers={"Content-Type": "application/json"})
                response.close()
                return int(response.status_code)
        except MediaRefusedError as exc:
            hint = "list it in alerts.allowed_private_hosts to allow it"
            message = str(exc).replace("and is not the DAM's own host", hint)
            raise MediaRefusedError(message) from None

    def _guard(self, url: str) -> SafeDownloader:
        """The SSRF guard of DAM downloads; a private address needs the allow-list."""
        host = normalise_host(urlsplit(url).hostname or "")
        hint = "list it in alerts.allowed_private_hosts to allow it"
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None and not literal.is_global and host not in self._private:
            raise MediaRefusedError(f"{host} is a non-public address {literal}; {hint}")
        return SafeDownloader((host,), max_bytes=0, timeout=self.config.timeout,
                              private_hosts=self._private, resolver=self._resolver)

    def _failed(self, message: str) -> None:
        log.warning("%s", message)
        self._count("failed")

    def _count(self, name: str) -> None:
        try:
            self.redis.hincrby(self._key("stats"), name, 1)
        except Exception:
            log.exception("alerts: could not count %s", name)

    def _key(self, *parts: str) -> str:
        return self.keys.of("alerts", *parts)


def _human(seconds: float) -> str:
    """`2h05m`, `4m30s`, `12s`: a duration for a chat message."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def alerts_for(config: Config, redis_client: Any, keys: Keys,
               resolver: Resolver | None = None) -> Alerts:
    """The deployment's alerts, with every secret of `config` masked from their text."""
    return Alerts(config.alerts, redis_client, keys, secrets=secret_values(config),
                  resolver=resolver)
