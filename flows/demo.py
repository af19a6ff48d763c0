"""The offline demo: a generated Reddit month and a small web, served on 127.0.0.1.

Nothing here is copied from elsewhere: articles are generated from templates with
a fixed seed. The month holds link posts above and below 3 karma, self posts,
image links, NSFW posts, Wikipedia links in several languages, URL variants of
the same page, and links to a web of news sites with boilerplate around their
articles, syndicated near-copies on other sites, junk walls, non-English pages,
dead links and redirects. The web is served by ``DemoWeb`` on 127.0.0.1; the
fetcher reaches the made-up hosts through ``FetchConfig.resolve`` (like curl's
``--resolve``), so no traffic leaves the machine.
"""

from __future__ import annotations

import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import zstandard

SUBJECTS = ["The city council", "A team of researchers", "The regional hospital", "Local farmers", "The transport agency",
            "A group of students", "The national museum", "Engineers at the plant", "The school board", "Volunteers"]
VERBS = ["announced", "published", "proposed", "reported", "defended", "questioned", "celebrated", "reviewed", "approved", "delayed"]
OBJECTS = ["a new budget for public libraries", "the results of a ten-year study on river pollution",
           "plans to expand the northern railway line", "a program to train nurses in rural areas",
           "changes to the water treatment system", "a report on the cost of housing", "a festival of traditional music",
           "a proposal to rebuild the old harbour", "new rules for electric scooters", "a survey of migrating birds"]
DETAILS = ["after months of public debate", "despite objections from several residents", "with support from both parties",
           "according to documents seen by reporters", "in a statement released on Monday", "following a long review",
           "to the surprise of many observers", "as part of a wider reform", "after an independent audit", "late on Friday"]
FRENCH = ("Le conseil municipal a présenté mardi un nouveau projet pour la rénovation du port. Les habitants ont exprimé "
          "leurs inquiétudes concernant le coût des travaux et la durée du chantier. ")
BOILER = "<header><nav><a href='/'>Home</a> | <a href='/world'>World</a> | <a href='/sport'>Sport</a></nav></header>"
FOOTER = "<footer><p>Copyright 2017 {site}. All rights reserved. <a href='/privacy'>Privacy</a></p></footer>"


def article_text(rng: random.Random, n_sentences: int) -> list[str]:
    paras, cur = [], []
    for _ in range(n_sentences):
        cur.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(DETAILS)}.")
        if len(cur) >= 4:
            paras.append(" ".join(cur))
            cur = []
    if cur:
        paras.append(" ".join(cur))
    return paras


def page(site: str, title: str, paras: list[str], extra_top: str = "") -> str:
    body = "".join(f"<p>{p}</p>" for p in paras)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title} - {site}</title></head><body>"
            f"{BOILER}{extra_top}<article><h1>{title}</h1>{body}</article>"
            f"<aside><h3>Most read</h3><ul><li>Weather</li><li>Markets</li></ul></aside>{FOOTER.format(site=site)}</body></html>")


class DemoWorld:
    """The pages (by host and path) and two months of submissions that link to them.

    Month 2 (2017-08) brings new articles, a re-post of a month-1 page (fetched
    once, in month 1) and a syndicated copy of a month-1 article (a near-duplicate
    across months: the month-1 original is kept)."""

    MONTHS = ("2017-07", "2017-08")
    MONTH_T0 = (1_499_000_000, 1_501_700_000)  # 2017-07-02, 2017-08-02: inside the faithful window

    NEWS = ["dailyherald.example", "morningpost.example", "citytimes.example", "valleynews.example"]

    def __init__(self, seed: int = 7, n_articles: int = 60):
        rng = random.Random(seed)
        self.pages: dict[tuple[str, str], tuple[int, str, dict]] = {}
        subs = []
        sid = [0]
        month = [0]

        def submit(url, score, **kw):
            sid[0] += 1
            subs.append({"_month": month[0], "id": f"demo{sid[0]}", "created_utc": self.MONTH_T0[month[0]] + sid[0] * 600,
                         "subreddit": kw.pop("subreddit", "news"),
                         "author": "demo_user", "title": kw.pop("title", "A story"), "url": url, "score": score,
                         "is_self": kw.pop("is_self", False), "over_18": kw.pop("over_18", False), **kw})

        first_paras = {}
        for i in range(n_articles):
            month[0] = 0 if i < n_articles // 2 else 1
            site = self.NEWS[i % len(self.NEWS)]
            title = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}".capitalize()
            paras = article_text(rng, rng.randint(12, 30))
            path = f"/{2017}/story-{i}"
            self.pages[(site, path)] = (200, page(site, title, paras), {})
            score = rng.choice([1, 2, 3, 5, 8, 20, 100])
            first_paras[i] = (site, title, paras, score, path)
            submit(f"http://www.{site}{path}", score, title=title)
            if i % 6 == 0:  # the same page posted again as a URL variant
                submit(f"http://{site}{path}/?utm_source=reddit#comments", 7, subreddit="worldnews", title=title)
            if i % 5 == 0:  # syndicated near-copy on another site, different boilerplate and a line changed
                other = self.NEWS[(i + 1) % len(self.NEWS)]
                copy = paras[:-1] + [f"This article first appeared in {site}."]
                self.pages[(other, f"/wire/{i}")] = (200, page(other, title, copy, "<div>Wire service</div>"), {})
                submit(f"http://{other}/wire/{i}", 12, title=title)
        # Month 2 links back to month 1: a re-post, and a late syndicated copy.
        month[0] = 1
        submit("http://dailyherald.example/2017/story-0/?utm_source=twitter", 25, subreddit="news")
        i = min(i for i, v in first_paras.items() if v[3] >= 3 and i < n_articles // 2)
        site, title, paras, _, path = first_paras[i]
        self.late_copy_of = f"{site}{path}"
        self.pages[("latewire.example", "/copy-1")] = (200, page("latewire.example", title, paras[1:] + ["Reprinted."]), {})
        submit("http://latewire.example/copy-1", 40, title=title)
        month[0] = 0
        for lang in ("en", "de", "fr", "ja"):
            host = f"{lang}.wikipedia.org" if lang != "ja" else "ja.m.wikipedia.org"
            self.pages[(host, "/wiki/Harbour")] = (200, page(host, "Harbour", article_text(rng, 12)), {})
            submit(f"http://{host}/wiki/Harbour", 50, subreddit="todayilearned")
        self.pages[("mirror.example", "/wiki-copy")] = (
            200, page("mirror.example", "Harbour", ["From Wikipedia, the free encyclopedia"] + article_text(rng, 12)), {})
        submit("http://mirror.example/wiki-copy", 9)
        self.pages[("lemonde.example", "/port")] = (200, page("lemonde.example", "Le port", [FRENCH * 6]), {})
        submit("http://lemonde.example/port", 30, subreddit="france")
        self.pages[("shop.example", "/check")] = (200, page("shop.example", "Just a moment", ["Are you a robot? Please complete the security check."]), {})
        submit("http://shop.example/check", 15)
        self.pages[("tiny.example", "/short")] = (200, page("tiny.example", "Short", ["Too short to matter."]), {})
        submit("http://tiny.example/short", 4)
        self.pages[("go.example", "/r1")] = (301, "", {"Location": "http://dailyherald.example/2017/story-0"})
        submit("http://go.example/r1", 6)
        submit("http://dead.example/gone", 11)  # 404
        submit("https://i.imgur.com/cat.jpg", 500, subreddit="aww")
        submit("https://www.youtube.com/watch?v=abc", 80, subreddit="videos")
        submit("http://dailyherald.example/photo.png", 30)
        submit("https://www.reddit.com/r/news/comments/x/y/", 40, is_self=True)
        submit("https://www.reddit.com/r/news/comments/z/", 40)
        submit("http://valleynews.example/2017/nsfw", 40, over_18=True)
        submit("http://valleynews.example/2018/late", 40, created_utc=1_520_000_000)
        self.submissions = subs
        self.hosts = sorted({h for h, _ in self.pages} | {"dead.example"})

    def write_dump(self, path, months: tuple[int, ...] = (0, 1)) -> None:
        """Writes the months as one zstd NDJSON dump, like Pushshift's (month 1 has one malformed line)."""
        lines = [orjson.dumps({k: v for k, v in s.items() if k != "_month"}) for s in self.submissions if s["_month"] in months]
        if 0 in months:
            lines.append(b'{"id": "broken", "url": ')
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n"))

    def write_dumps(self, directory) -> list:
        """One dump per month, named as Pushshift names them: RS_2017-07.zst, RS_2017-08.zst."""
        from pathlib import Path

        paths = []
        for m, name in enumerate(self.MONTHS):
            p = Path(directory) / f"RS_{name}.zst"
            self.write_dump(p, (m,))
            paths.append(p)
        return paths


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (a free port unless one is given), as a
    context manager. The demo's web and the tests' servers are built on it."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0):
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.address = f"{host}:{self.port}"
        self.url = f"http://{self.address}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class DemoWeb(LoopbackServer):
    """Serves a DemoWorld on 127.0.0.1, routing by the Host header."""

    def __init__(self, world: DemoWorld, port: int = 0, outage_after: int | None = None):
        """OUTAGE_AFTER (for tests): answer that many page requests, then close every
        connection unanswered, robots.txt included, as a web that went down would."""
        pages = world.pages
        self.hits: dict[tuple[str, str], int] = {}
        hits = self.hits
        served = [0]
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                host = host[4:] if host.startswith("www.") else host
                path = self.path.split("?")[0].rstrip("/") or "/"
                with lock:
                    hits[(host, path)] = hits.get((host, path), 0) + 1
                    down = outage_after is not None and served[0] >= outage_after
                    if not down and path != "/robots.txt":
                        served[0] += 1
                if down:
                    self.close_connection = True
                    return  # no response: the client sees the connection closed
                if path == "/robots.txt":
                    status, body, headers = 200, "User-agent: *\nAllow: /\n", {"Content-Type": "text/plain"}
                else:
                    status, body, headers = pages.get((host, path), (404, "<html><body>Not here</body></html>", {}))
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", headers.get("Content-Type", "text/html; charset=utf-8"))
                for k, v in headers.items():
                    if k != "Content-Type":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler, port=port)


def demo_config(world: DemoWorld, address: str):
    """The configuration the demo (and the flow tests) build with: the made-up
    hosts resolve to the DemoWeb at ADDRESS on 127.0.0.1."""
    from pipeline.core.config import Config

    cfg = Config().replace(
        "fetch",
        resolve={h: address for host in world.hosts for h in (host, "www." + host)},
        allow_private_addresses=True,  # the demo's web is on 127.0.0.1, by design
        per_host_delay_s=0.05,
        connect_timeout_s=2.0,
        total_timeout_s=5.0,
    )
    # Hosts the demo does not serve (imgur, youtube) are dropped by the link stage before any fetch.
    return cfg
