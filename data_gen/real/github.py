"""A small GitHub REST (and GraphQL) client for mining: pagination through `Link` headers, waits
on rate limits (403/429 with `Retry-After` or `X-RateLimit-Reset`), and an on-disk response
cache so that a rerun of the same mining asks GitHub nothing it already answered.

Works against github.com, GitHub Enterprise (`api_url=https://HOST/api/v3`) or a test server."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from swelego.errors import SwelegoError
from swelego.records import write_json_atomic

DEFAULT_API = "https://api.github.com"
JSON = "application/vnd.github+json"
DIFF = "application/vnd.github.diff"


class GitHubError(SwelegoError):
    """A request GitHub answered with an error (or did not answer); `status` is 0 when unanswered."""

    def __init__(self, message: str, status: int = 0):
        self.status = status
        super().__init__(message)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str
    url: str
    cached: bool = False

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def next_url(self) -> str | None:
        """The `rel="next"` page from the Link header (requests' own Link parser)."""
        link = self.headers.get("Link") or self.headers.get("link")
        if not link:
            return None
        r = requests.Response()
        r.headers["Link"] = link
        return r.links.get("next", {}).get("url")


@dataclass
class ClientStats:
    requests: int = 0  # HTTP requests sent (retries included)
    cache_hits: int = 0
    rate_limit_waits: list[float] = field(default_factory=list)  # seconds slept per wait


class GitHubClient:
    """GET and GraphQL calls with pagination, rate-limit waits and a response cache.

    api_url: REST root; GraphQL goes to `<api_url>/graphql` (`<host>/api/graphql` for Enterprise).
    token: sent as a bearer token; defaults to $GITHUB_TOKEN. Without one GitHub allows 60 requests
        an hour, and GraphQL (linked issues) is unavailable.
    cache_dir: where successful responses are kept (None disables the cache).
    refresh: ignore cached responses (but still store the new ones).
    max_wait: longest single rate-limit wait in seconds; a later reset is an error.
    log: called with one line per wait, so a CLI can say why it is idle.
    """

    def __init__(self, api_url: str = DEFAULT_API, *, token: str | None = None, cache_dir: str | Path | None = None,
                 refresh: bool = False, max_wait: float = 3700.0, timeout: float = 30.0, max_retries: int = 5,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] = lambda m: None):
        self.api_url = api_url.rstrip("/")
        self.token = token if token is not None else os.environ.get("GITHUB_TOKEN") or None
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.refresh = refresh
        self.max_wait = max_wait
        self.timeout = timeout
        self.max_retries = max_retries
        self.sleep = sleep
        self.log = log
        self.stats = ClientStats()
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "swelego-miner"
        self._session.headers["X-GitHub-Api-Version"] = "2022-11-28"
        if self.token:
            self._session.headers["Authorization"] = f"Bearer {self.token}"

    # -- public calls ------------------------------------------------------------------
    def get(self, path_or_url: str, params: dict | None = None, *, accept: str = JSON) -> Response:
        url = path_or_url if "://" in path_or_url else f"{self.api_url}/{path_or_url.lstrip('/')}"
        if params:
            url = requests.Request("GET", url, params=params).prepare().url
        return self._request("GET", url, accept=accept)

    def get_json(self, path: str, params: dict | None = None) -> Any:
        return self.get(path, params).json()

    def get_text(self, path: str, accept: str = DIFF) -> str:
        return self.get(path, accept=accept).text

    def paginate(self, path: str, params: dict | None = None) -> Iterator[dict]:
        """Every item of a list endpoint, page after page until there is no `next` link."""
        resp = self.get(path, {"per_page": 100, **(params or {})})
        while True:
            items = resp.json()
            if not isinstance(items, list):
                raise GitHubError(f"{resp.url}: expected a list, got {type(items).__name__}", resp.status)
            yield from items
            nxt = resp.next_url
            if not nxt:
                return
            resp = self.get(nxt)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        if not self.token:
            raise GitHubError("the GitHub GraphQL API needs a token (set GITHUB_TOKEN)")
        root = self.api_url[: -len("/v3")] + "/graphql" if self.api_url.endswith("/api/v3") else f"{self.api_url}/graphql"
        body = json.dumps({"query": query, "variables": variables or {}}, sort_keys=True)
        data = self._request("POST", root, accept=JSON, body=body).json()
        if data.get("errors"):
            raise GitHubError(f"GraphQL error: {data['errors'][0].get('message', data['errors'][0])}")
        return data.get("data") or {}

    # -- transport ---------------------------------------------------------------------
    def _cache_path(self, method: str, url: str, accept: str, body: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256("\n".join((method, url, accept, body)).encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.json"

    def _request(self, method: str, url: str, *, accept: str, body: str = "") -> Response:
        cache = self._cache_path(method, url, accept, body)
        if cache is not None and not self.refresh and cache.exists():
            try:
                d = json.loads(cache.read_text())
                self.stats.cache_hits += 1
                return Response(d["status"], d["headers"], d["text"], url, cached=True)
            except (ValueError, KeyError):
                pass  # a torn cache file: ask again
        failures = 0
        while True:
            self.stats.requests += 1
            try:
                r = self._session.request(method, url, headers={"Accept": accept}, data=body or None,
                                          timeout=self.timeout)
            except requests.RequestException as e:
                failures += 1
                if failures > self.max_retries:
                    raise GitHubError(f"{method} {url}: no answer after {failures} tries ({type(e).__name__})") from None
                self.sleep(min(60.0, 2.0 ** failures))
                continue
            if r.status_code in (403, 429) and (wait := self._rate_limit_wait(r)) is not None:
                failures += 1
                if failures > self.max_retries:
                    raise GitHubError(f"{method} {url}: still rate limited after {failures} waits", r.status_code)
                self.log(f"GitHub rate limit: waiting {wait:.0f}s")
                self.stats.rate_limit_waits.append(wait)
                self.sleep(wait)
                continue
            if r.status_code >= 500 and failures < self.max_retries:
                failures += 1
                self.sleep(min(60.0, 2.0 ** failures))
                continue
            break
        if r.status_code >= 400:
            raise GitHubError(f"{method} {url}: HTTP {r.status_code} {_message(r)}", r.status_code)
        resp = Response(r.status_code, {k: v for k, v in r.headers.items() if k.lower() == "link"}, r.text, url)
        if cache is not None:
            write_json_atomic(cache, {"status": resp.status, "headers": resp.headers, "text": resp.text},
                              indent=None, ensure_ascii=True, newline=False)
        return resp

    def _rate_limit_wait(self, r: requests.Response) -> float | None:
        """Seconds to wait before retrying, or None when the 403/429 is not a rate limit."""
        h = r.headers
        if h.get("Retry-After", "").strip().isdigit():
            wait = float(h["Retry-After"])
        elif h.get("X-RateLimit-Remaining") == "0" and h.get("X-RateLimit-Reset", "").isdigit():
            wait = float(h["X-RateLimit-Reset"]) - time.time() + 1
        elif r.status_code == 429 or "rate limit" in _message(r).lower():
            wait = 60.0  # a secondary limit without a hint: GitHub asks for at least a minute
        else:
            return None
        wait = max(1.0, wait)
        if wait > self.max_wait:
            raise GitHubError(f"GitHub rate limit resets in {wait:.0f}s (more than --max-wait {self.max_wait:.0f}s); "
                              "set GITHUB_TOKEN or retry later", r.status_code)
        return wait


def _message(r: requests.Response) -> str:
    try:
        return str(r.json().get("message", ""))[:200]
    except ValueError:
        return r.text.strip()[:200]
