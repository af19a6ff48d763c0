"""Helpers for the tests. ../shared/data is read in place, never copied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WEBTEXT_SHARED", ROOT.parent / "shared")) / "data"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture
def shared_data():
    return shared


# --- a fake Reddit API on 127.0.0.1 for praw ---------------------------------------------

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeReddit:
    """Answers praw's token request and subreddit listings from a list of t3 records.

    Pages by ``after``/``limit`` like Reddit, caps a listing at ``cap`` items (Reddit
    keeps ~1,000), and sends ``x-ratelimit-*`` headers."""

    def __init__(self, posts_by_sub: dict[str, list[dict]], cap: int = 1000):
        self.posts = posts_by_sub
        self.cap = cap
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, obj, status=200):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-ratelimit-remaining", "599")
                self.send_header("x-ratelimit-used", "1")
                self.send_header("x-ratelimit-reset", "600")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                fake.requests.append("POST " + self.path)
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                if self.path.startswith("/api/v1/access_token"):
                    self._send({"access_token": "fake-token", "token_type": "bearer", "expires_in": 3600, "scope": "*"})
                else:
                    self._send({"error": 404}, 404)

            def do_GET(self):
                fake.requests.append("GET " + self.path)
                parts = urlsplit(self.path)
                segs = [s for s in parts.path.split("/") if s]
                q = parse_qs(parts.query)
                if len(segs) >= 3 and segs[0] == "r":
                    sub, listing = segs[1], segs[2]
                    posts = list(fake.posts.get(sub.lower(), []))
                    if listing == "top":
                        posts.sort(key=lambda p: -(p.get("score") or 0))
                    else:
                        posts.sort(key=lambda p: -(p.get("created_utc") or 0))
                    posts = posts[: fake.cap]
                    limit = int(q.get("limit", ["25"])[0])
                    after = q.get("after", [None])[0]
                    start = 0
                    if after:
                        ids = ["t3_" + p["id"] for p in posts]
                        start = ids.index(after) + 1 if after in ids else len(posts)
                    page = posts[start : start + limit]
                    nxt = "t3_" + page[-1]["id"] if page and start + limit < len(posts) else None
                    self._send(
                        {
                            "kind": "Listing",
                            "data": {"after": nxt, "before": None, "dist": len(page),
                                     "children": [{"kind": "t3", "data": {**p, "name": "t3_" + p["id"]}} for p in page]},
                        }
                    )
                else:
                    self._send({"error": 404}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def praw_overrides(self) -> dict:
        return {"oauth_url": self.url, "reddit_url": self.url, "short_url": self.url}
