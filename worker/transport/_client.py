"""The partner transport: urllib3's pools, with every attempt visible and every answer bounded.

A partner call is one small request and one small answer, and an attempt that failed must be told apart
by *how* it failed (see ``_errors``). So urllib3's retries and redirects are off, the request is checked
before anything is sent, and the answer is read by this module under caps, not by urllib3's preloading.
"""

from __future__ import annotations

import http.client
import re
import threading
import urllib.request
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from urllib3 import BaseHTTPResponse, PoolManager, ProxyManager, Timeout
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import HTTPError, LocationValueError
from urllib3.util import make_headers

from worker.transport._errors import classify_transport_error, not_sent, too_large, where
from worker.transport._limits import AnswerTooLarge, BoundedDecoder
from worker.transport._outcome import PartnerError
from worker.transport._pool import NEW_CONNECTION_ONLY, ConnectionBounds, pool_classes
from worker.transport._settings import TransportSettings

USER_AGENT = "order-worker/0.1"
_READ_CHUNK = 64 * 1024
_MAX_ROUTES = 32
"""Origins remembered per client; the managers keep as many pools, so a remembered pool is never evicted."""
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class HttpAnswer(NamedTuple):
    """Whatever the partner answered, any status: interpreting it is the provider client's job."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class PartnerHttp:
    """One partner's connection pools; one per partner per process, shared by threads.

    * one keep-alive pool per origin (per origin and proxy when one applies), at most ``pool_size`` idle
      connections kept; when all are busy a temporary connection is opened rather than waiting for one;
    * a pooled connection is reused only when it is still open, unread and idle for less than
      ``idle_expiry`` seconds, and never for a ``post(..., new_connection=True)``: the request that is not
      safe to repeat is sent on a connection opened for it, so a partner closing an idle connection as the
      request leaves cannot make its outcome unknown;
    * no retries and no redirects: every attempt is visible to the caller;
    * the read timeout bounds the whole answer; its body, decoded body and header block are capped;
    * ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` are honoured unless a proxy is configured;
    * failures are raised as :class:`PartnerError` (see ``classify_transport_error``).

    ``PartnerHttp(settings)`` or ``PartnerHttp(**fields of TransportSettings)``.
    """

    def __init__(self, settings: TransportSettings | None = None, **fields: Any) -> None:
        if settings is not None and fields:
            raise TypeError("pass either settings or fields, not both")
        self.settings = settings if settings is not None else TransportSettings(**fields)
        limits = self.settings
        self._pool_classes = pool_classes(
            ConnectionBounds(
                idle_expiry=limits.idle_expiry,
                answer_seconds=limits.read_timeout,
                answer_bytes=limits.max_header_bytes + limits.max_response_bytes + _READ_CHUNK,
            )
        )
        self._pool_kw: dict[str, Any] = {
            "timeout": Timeout(connect=limits.connect_timeout, read=limits.read_timeout),
            "maxsize": limits.pool_size,
            "block": False,
            "retries": False,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": str(limits.ca_bundle) if limits.ca_bundle else None,
            "cert_file": str(limits.client_cert) if limits.client_cert else None,
            "key_file": str(limits.client_key) if limits.client_key else None,
        }
        self._lock = threading.Lock()
        self._direct: PoolManager | None = None
        self._proxied: dict[str, PoolManager] = {}
        self._routes: dict[str, tuple[HTTPConnectionPool | PoolManager, bool]] = {}
        """origin -> (pool or manager, absolute URL?); see :meth:`_route`."""

    @property
    def read_timeout(self) -> float:
        return self.settings.read_timeout

    @property
    def max_response_bytes(self) -> int:
        return self.settings.max_response_bytes

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"PartnerHttp(connect_timeout={s.connect_timeout}, read_timeout={s.read_timeout}, "
            f"max_response_bytes={s.max_response_bytes}, proxy={'set' if s.proxy_url else 'none'})"
        )

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, new_connection: bool = False
    ) -> HttpAnswer:
        if not new_connection:
            return self._request("POST", url, body, headers)
        only_new = NEW_CONNECTION_ONLY.set(True)
        try:
            return self._request("POST", url, body, headers)
        finally:
            NEW_CONNECTION_ONLY.reset(only_new)

    def get(self, url: str, headers: Mapping[str, str]) -> HttpAnswer:
        return self._request("GET", url, None, headers)

    def close(self) -> None:
        with self._lock:
            managers: list[PoolManager] = [*self._proxied.values()]
            if self._direct is not None:
                managers.append(self._direct)
            self._direct, self._proxied, self._routes = None, {}, {}
        for manager in managers:
            manager.clear()

    def __enter__(self) -> PartnerHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- one call -------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> HttpAnswer:
        response: BaseHTTPResponse | None = None
        try:
            target, outgoing = _checked_request(method, url, headers)
            pool, absolute = self._route(url)
            response = pool.urlopen(
                method,
                url if absolute else target,
                body=body,
                headers=outgoing,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
            )
            return self._read(response, method, url)
        except PartnerError:
            raise
        except AnswerTooLarge as exc:
            raise too_large(exc, method, url, response.status if response else None) from None
        except (HTTPError, OSError, http.client.HTTPException, zlib.error, ValueError) as exc:
            raise classify_transport_error(exc, method, url, self.settings.read_timeout) from None
        finally:
            if response is not None:
                response.release_conn()

    def _read(self, response: BaseHTTPResponse, method: str, url: str) -> HttpAnswer:
        limits = self.settings
        headers = response.headers
        chunks: list[bytes] = []
        received = 0
        try:
            lines = list(headers.iteritems())
            if len(lines) > limits.max_header_count:
                raise AnswerTooLarge("headers", limits.max_header_count)
            if sum(len(name) + len(value) + 4 for name, value in lines) > limits.max_header_bytes:
                raise AnswerTooLarge("headers", limits.max_header_bytes)
            decoder = BoundedDecoder(headers.get("content-encoding", ""), limits.max_response_bytes)
            while data := response.read(_READ_CHUNK, decode_content=False):
                received += len(data)
                if received > limits.max_response_bytes:
                    raise AnswerTooLarge("answer", limits.max_response_bytes)
                chunks.append(decoder.feed(data))
        except BaseException:
            response.close()  # an answer not read to its end leaves the connection out of step
            raise
        return HttpAnswer(response.status, headers, b"".join(chunks))

    # --- routes ---------------------------------------------------------------------------------------

    def _route(self, url: str) -> tuple[HTTPConnectionPool | PoolManager, bool]:
        """The pool an origin's calls go through, and whether it takes the absolute URL (a forwarding
        proxy) or the path. Decided once per origin; urllib3's own per-call URL parsing and pool lookup
        cost more CPU than the rest of the request."""
        scheme_end = url.find("://")
        path_at = url.find("/", scheme_end + 3) if scheme_end > 0 else -1
        origin = url if path_at < 0 else url[:path_at]
        route = self._routes.get(origin)
        if route is not None:
            return route
        try:
            parts = urlsplit(origin)
            scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
        except ValueError:
            raise LocationValueError("invalid URL") from None
        proxy = self._proxy_for(scheme, host, port)
        with self._lock:
            manager: PoolManager
            if proxy is None:
                manager = self._direct or self._new_manager(None)
                self._direct = manager
            else:
                manager = self._proxied.get(proxy) or self._new_manager(proxy)
                self._proxied[proxy] = manager
            if proxy is not None and scheme == "http":
                route = (manager, True)  # forwarded: ProxyManager adds the absolute form and proxy headers
            else:
                route = (manager.connection_from_url(origin), False)
            if len(self._routes) < _MAX_ROUTES:
                self._routes[origin] = route
        return route

    def _proxy_for(self, scheme: str, host: str, port: int | None) -> str | None:
        """The configured proxy; else the environment's for this scheme unless NO_PROXY exempts the
        host (the standard library's reading of those variables, as curl and requests do)."""
        if self.settings.proxy_url is not None:
            return self.settings.proxy_url.get_secret_value()
        if not self.settings.proxy_from_env or not host:
            return None
        proxy = urllib.request.getproxies().get(scheme)
        if not proxy:
            return None
        target = host if port is None else f"{host}:{port}"
        if urllib.request.proxy_bypass(target):
            return None
        return proxy

    def _new_manager(self, proxy: str | None) -> PoolManager:
        kw = dict(self._pool_kw)
        if proxy is None:
            manager = PoolManager(num_pools=_MAX_ROUTES, **kw)
        else:
            parts = urlsplit(proxy)
            auth = None
            if parts.username is not None:
                auth = make_headers(proxy_basic_auth=f"{parts.username}:{parts.password or ''}")
                netloc = parts.netloc.rsplit("@", 1)[1]
                proxy = parts._replace(netloc=netloc).geturl()
            manager = ProxyManager(proxy, num_pools=_MAX_ROUTES, proxy_headers=auth, **kw)
        manager.pool_classes_by_scheme = self._pool_classes
        return manager


def _checked_request(method: str, url: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The request target and the headers to send, refused before anything is sent when a header or the
    path could split the request (a line break in a value is header injection; urllib3 would
    percent-encode a bad path)."""
    try:
        target = url[url.index("/", url.index("://") + 3) :]
    except ValueError:
        target = "/"
    if _UNSAFE_IN_TARGET.search(target):
        raise http.client.InvalidURL("path with a space or control character")
    outgoing = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or _UNSAFE_IN_VALUE.search(value) or not _latin1(value):
            safe_name = name if _TOKEN.fullmatch(name) else "(a header)"
            raise not_sent(
                "bad_request_header",
                f"{where(method, url)}: header {safe_name} has a character HTTP does not allow",
                retryable=False,
            )
        if name.lower() != "user-agent":
            outgoing[name] = value
    return target.split("#", 1)[0], outgoing


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
