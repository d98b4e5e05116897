"""A GitHub REST/GraphQL replay server on 127.0.0.1, so the real mining client is tested over HTTP.

Routes answer with recorded bodies in the API's own shapes (helpers below build PR, issue and
comment objects with the fields GitHub returns); list endpoints are paged with `Link` headers
like GitHub's; any route can be made to answer once with a 403 primary rate-limit response
(`X-RateLimit-Remaining: 0`, `X-RateLimit-Reset`). Every request is recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}
RATE_LIMITED = {
    "message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a "
               "higher rate limit. Check out the documentation for more details.)",
    "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting",
}


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


class GitHubServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str, str], Any] = {}  # (method, path, kind) -> body or callable
        self.pages: dict[str, list[list]] = {}  # list endpoint path -> pages of items
        self.rate_limit: dict[str, int] = {}  # path -> 403s still to send
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._httpd = _Quiet(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- recording ---------------------------------------------------------------------
    def json(self, path: str, body: Any) -> None:
        self.routes[("GET", path, "json")] = body

    def diff(self, path: str, text: str) -> None:
        self.routes[("GET", path, "diff")] = text

    def paged(self, path: str, items: list, per_page: int) -> None:
        """A list endpoint whose items GitHub would return `per_page` at a time."""
        self.pages[path] = [items[i:i + per_page] for i in range(0, len(items), per_page)] or [[]]

    def graphql(self, answer: Callable[[dict], dict]) -> None:
        self.routes[("POST", "/graphql", "json")] = answer

    def rate_limit_once(self, path: str, times: int = 1) -> None:
        self.rate_limit[path] = times

    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.requests if path is None or r["path"] == path)

    # -- serving -----------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None,
                      content_type: str = "application/json; charset=utf-8") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-RateLimit-Limit", "5000")
                self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                accept = self.headers.get("Accept", "")
                with server._lock:
                    server.requests.append({"method": method, "path": parts.path, "query": query, "accept": accept,
                                            "auth": self.headers.get("Authorization", "")})
                    left = server.rate_limit.get(parts.path, 0)
                    if left:
                        server.rate_limit[parts.path] = left - 1
                if left:
                    reset = int(time.time()) + 1
                    self._send(403, RATE_LIMITED, {"X-RateLimit-Remaining": "0", "X-RateLimit-Used": "60",
                                                   "X-RateLimit-Reset": str(reset), "X-RateLimit-Resource": "core"})
                    return
                if method == "GET" and parts.path in server.pages:
                    pages = server.pages[parts.path]
                    page = int(query.get("page", "1"))
                    items = pages[page - 1] if 0 < page <= len(pages) else []
                    links = []
                    for rel, n in (("next", page + 1), ("last", len(pages)), ("first", 1), ("prev", page - 1)):
                        if 0 < n <= len(pages) and n != page:
                            q = urlencode({**query, "page": n})
                            links.append(f'<{server.url}{parts.path}?{q}>; rel="{rel}"')
                    self._send(200, items, {"Link": ", ".join(links)} if links else None)
                    return
                kind = "diff" if "diff" in accept else "json"
                route = server.routes.get((method, parts.path, kind))
                if route is None:
                    self._send(404, NOT_FOUND)
                elif callable(route):
                    self._send(200, route(json.loads(body or b"{}")))
                elif kind == "diff":
                    self._send(200, route, content_type="text/plain; charset=utf-8")
                else:
                    self._send(200, route)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler


# -- objects in the API's shapes ---------------------------------------------------------------
def user(login: str = "octocat") -> dict:
    return {"login": login, "id": 1, "type": "User", "site_admin": False,
            "html_url": f"https://github.com/{login}"}


def repo_json(full_name: str, clone_url: str, default_branch: str = "main") -> dict:
    owner, name = full_name.split("/")
    return {"id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": name, "full_name": full_name,
            "owner": user(owner), "private": False, "html_url": f"https://github.com/{full_name}",
            "clone_url": clone_url, "default_branch": default_branch, "fork": False}


def pr_json(repo: dict, number: int, *, title: str, body: str | None, base_sha: str, created_at: str,
            merged: bool = True) -> dict:
    return {
        "url": f"https://api.github.com/repos/{repo['full_name']}/pulls/{number}", "id": 1000 + number,
        "number": number, "state": "closed", "locked": False, "title": title, "user": user(), "body": body,
        "created_at": created_at, "updated_at": created_at, "closed_at": created_at,
        "merged_at": created_at if merged else None,
        "merge_commit_sha": f"{number:040x}", "draft": False,
        "html_url": f"https://github.com/{repo['full_name']}/pull/{number}",
        "diff_url": f"https://github.com/{repo['full_name']}/pull/{number}.diff",
        "head": {"label": f"octocat:fix-{number}", "ref": f"fix-{number}", "sha": f"{number:040x}", "user": user(),
                 "repo": repo},
        "base": {"label": f"{repo['owner']['login']}:main", "ref": "main", "sha": base_sha, "user": user(),
                 "repo": repo},
        "author_association": "CONTRIBUTOR",
    }


def issue_json(repo: dict, number: int, *, title: str, body: str, comments: int = 0,
               created_at: str = "2024-01-01T00:00:00Z") -> dict:
    return {"url": f"https://api.github.com/repos/{repo['full_name']}/issues/{number}", "id": 5000 + number,
            "number": number, "title": title, "user": user("reporter"), "labels": [], "state": "closed",
            "locked": False, "comments": comments, "created_at": created_at, "updated_at": created_at,
            "closed_at": created_at, "body": body, "author_association": "NONE",
            "html_url": f"https://github.com/{repo['full_name']}/issues/{number}"}


def comment_json(number: int, body: str, created_at: str) -> dict:
    return {"id": 9000 + number, "user": user("helper"), "created_at": created_at, "updated_at": created_at,
            "body": body, "author_association": "MEMBER"}


@pytest.fixture
def github_server():
    server = GitHubServer()
    yield server
    server.close()
