"""Login sessions and CSRF: the cookie holds a server-side session id, every cookie form is
same-origin and carries the session's token; the bearer API needs neither."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy.engine import Engine

from models.db import make_engine, migrate
from tests.conftest import REDIS_TEST_URL
from tests.worker.web_server import free_port, serving
from worker.settings import Settings
from worker.web.app import create_app
from worker.web.auth import COOKIE
from worker.web.csrf import MAX_FORM_BYTES
from worker.web.login import LOGIN_CSRF_COOKIE
from worker.web.services import (
    SYNC_SEATS,
    WebServices,
    secure_cookies,
    session_store,
)
from worker.web.sessions import (
    REDIS_KEY_PREFIX,
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    token_fingerprint,
)

SUPPORT = "support-token-login"
ADMIN = "admin-token-login"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Recorder:
    sent: list[tuple[str, list[Any]]] = field(default_factory=list)

    def send(self, name: str, args: Sequence[Any]) -> str:
        self.sent.append((name, list(args)))
        return "ok"


@dataclass
class Site:
    url: str
    dispatcher: Recorder
    sessions: SessionStore

    def client(self, **headers: str) -> httpx.Client:
        """A browser on this site: every POST says it comes from one of the site's pages."""
        return httpx.Client(base_url=self.url, headers={"Origin": self.url, **headers})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    migrate(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


def serve_site(
    engine: Engine,
    sessions: SessionStore,
    *,
    support_tokens: tuple[str, ...] = (SUPPORT,),
    secure: bool | None = None,
) -> Any:
    dispatcher = Recorder()
    services = WebServices(
        engine=engine,
        webhook_secret="whsec_x",
        support_tokens=support_tokens,
        admin_tokens=(ADMIN,),
        dispatcher=dispatcher,
        sessions=sessions,
        secure_cookies=secure,
    )
    return dispatcher, serving(create_app(services=services))


@pytest.fixture
def site(engine: Engine) -> Iterator[Site]:
    sessions = MemorySessionStore()
    dispatcher, server = serve_site(engine, sessions)
    with server as url:
        yield Site(url, dispatcher, sessions)


def csrf_of(page: httpx.Response) -> str:
    found = CSRF_INPUT.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def log_in(client: httpx.Client, token: str) -> httpx.Response:
    """Open the login form, then post it with its CSRF token, as a browser does."""
    form = client.get("/login")
    return client.post(
        "/login",
        data={"token": token, "next": "/reconciliations", "csrf_token": csrf_of(form)},
    )


def page_csrf(client: httpx.Client) -> str:
    """The CSRF token the signed-in pages' forms carry (logout, re-sync)."""
    page = client.get("/reconciliations")
    assert page.status_code == 200
    return csrf_of(page)


def test_the_cookie_holds_a_random_session_id_never_the_token(site: Site) -> None:
    with site.client() as first, site.client() as second:
        response = log_in(first, SUPPORT)
        assert response.status_code == 303
        assert response.headers["location"] == "/reconciliations"
        cookie = response.headers["set-cookie"]
        assert SUPPORT not in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Max-Age=28800" in cookie  # 8 hours
        assert "Secure" not in cookie  # served over http
        session_id = first.cookies[COOKIE]
        assert len(session_id) >= 43  # 256 random bits
        assert log_in(second, SUPPORT).status_code == 303
        assert second.cookies[COOKIE] != session_id  # one session per login
        assert first.get("/reconciliations").status_code == 200
    with site.client() as forged:
        forged.cookies.set(COOKIE, SUPPORT)  # the raw token is no longer a login
        assert forged.get("/reconciliations").status_code == 401


def test_logout_ends_the_session_on_the_server(site: Site) -> None:
    with site.client() as client:
        log_in(client, SUPPORT)
        session_id = client.cookies[COOKIE]
        response = client.post("/logout", data={"csrf_token": page_csrf(client)})
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        assert site.sessions.find(session_id) is None
    with site.client() as replay:
        replay.cookies.set(COOKIE, session_id)  # a copy of the cookie kept from before
        assert replay.get("/reconciliations").status_code == 401


def test_a_cross_site_resync_is_refused(site: Site) -> None:
    """The attack of issue 17: a page on another port of the same host posts the re-sync form
    of a logged-in admin."""
    with site.client() as admin:
        log_in(admin, ADMIN)
        csrf = page_csrf(admin)
        form = {"org": "org_x", "what": "seats", "back": "/reconciliations", "csrf_token": csrf}
        other_port = f"http://127.0.0.1:{free_port()}"
        for headers in (
            {"Origin": other_port},
            {"Origin": "null"},
            {"Origin": "", "Referer": f"{other_port}/attack.html"},
            {"Origin": ""},  # neither header
        ):
            refused = admin.post("/admin/resync", data=form, headers=headers)
            assert refused.status_code == 403, headers
            assert "cross-site request refused" in refused.text
        missing = admin.post("/admin/resync", data={**form, "csrf_token": ""})
        wrong = admin.post("/admin/resync", data={**form, "csrf_token": csrf[:-1] + "x"})
        for response in (missing, wrong):
            assert response.status_code == 403
            assert "CSRF token is missing or stale" in response.text
        assert site.dispatcher.sent == []
        referer_only = {"Origin": "", "Referer": f"{site.url}/reconciliations/1"}
        accepted = admin.post("/admin/resync", data=form, headers=referer_only)
        assert accepted.status_code == 303
        assert site.dispatcher.sent == [(SYNC_SEATS, ["org_x"])]


def test_a_support_session_cannot_resync(site: Site) -> None:
    with site.client() as support:
        log_in(support, SUPPORT)
        form = {"org": "org_x", "what": "seats", "csrf_token": page_csrf(support)}
        response = support.post("/admin/resync", data=form)
        assert response.status_code == 403
        assert "needs an admin token" in response.text
    assert site.dispatcher.sent == []


def test_logout_needs_the_same_origin_and_the_sessions_token(site: Site) -> None:
    with site.client() as client:
        log_in(client, SUPPORT)
        session_id = client.cookies[COOKIE]
        csrf = page_csrf(client)
        other = {"Origin": f"http://127.0.0.1:{free_port()}"}
        assert client.post("/logout", data={"csrf_token": csrf}, headers=other).status_code == 403
        assert client.post("/logout", data={"csrf_token": "guess"}).status_code == 403
        assert site.sessions.find(session_id) is not None  # still logged in
        assert client.get("/reconciliations").status_code == 200


def test_the_login_form_needs_its_csrf_token_and_the_same_origin(site: Site) -> None:
    with site.client() as client:
        no_token = client.post("/login", data={"token": ADMIN})  # no form cookie, no field
        assert no_token.status_code == 403
        assert "stale" in no_token.text
        csrf = csrf_of(client.get("/login"))
        other = {"Origin": f"http://127.0.0.1:{free_port()}"}
        cross = client.post("/login", data={"token": ADMIN, "csrf_token": csrf}, headers=other)
        assert cross.status_code == 403
        assert "cross-site request refused" in cross.text
        assert COOKIE not in client.cookies
        bad = client.post("/login", data={"token": "wrong", "csrf_token": csrf})
        assert bad.status_code == 401
        assert "not valid" in bad.text


def test_the_bearer_api_needs_no_csrf_token_and_ignores_the_cookie(site: Site) -> None:
    resync = "/api/admin/orgs/org_x/resync/usage"
    with site.client() as browser:
        log_in(browser, ADMIN)
        assert browser.post(resync).status_code == 401  # a session cookie is not accepted
    with httpx.Client(base_url=site.url) as api:  # no Origin, no cookie, no CSRF token
        assert api.post(resync, headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 202


def test_a_form_body_is_bounded(site: Site) -> None:
    with site.client() as client:
        response = client.post("/login", content=b"token=" + b"x" * MAX_FORM_BYTES)
        assert response.status_code == 413


def test_a_token_removed_from_the_settings_ends_its_sessions(engine: Engine) -> None:
    sessions = MemorySessionStore()
    _, before = serve_site(engine, sessions)
    with before as url, httpx.Client(base_url=url, headers={"Origin": url}) as client:
        log_in(client, SUPPORT)
        session_id = client.cookies[COOKIE]
    _, after = serve_site(engine, sessions, support_tokens=("a-new-support-token",))
    with after as url, httpx.Client(base_url=url) as client:
        client.cookies.set(COOKIE, session_id)
        assert client.get("/reconciliations").status_code == 401


@pytest.mark.parametrize(
    ("secure", "forwarded_proto", "expected"),
    [(None, "https", True), (None, None, False), (True, None, True), (False, "https", False)],
)
def test_the_cookie_is_secure_over_https_or_as_configured(
    engine: Engine, secure: bool | None, forwarded_proto: str | None, expected: bool
) -> None:
    _, server = serve_site(engine, MemorySessionStore(), secure=secure)
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as from a local TLS proxy.
    proxied = {"X-Forwarded-Proto": forwarded_proto} if forwarded_proto else {}
    with server as url, httpx.Client(base_url=url, headers={"Origin": url, **proxied}) as client:
        form = client.get("/login")
        csrf = csrf_of(form)
        client.cookies.set(LOGIN_CSRF_COOKIE, csrf)  # httpx keeps a Secure one for https
        response = client.post("/login", data={"token": SUPPORT, "csrf_token": csrf})
    assert response.status_code == 303
    assert ("Secure" in form.headers["set-cookie"]) is expected
    assert ("Secure" in response.headers["set-cookie"]) is expected


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, None),  # Secure when the request came over https
        ({"environment": "production"}, True),
        ({"web_cookie_secure": "always"}, True),
        ({"environment": "production", "web_cookie_secure": "never"}, False),
    ],
)
def test_the_secure_flag_setting(variables: dict[str, str], expected: bool | None) -> None:
    assert secure_cookies(Settings(**variables)) is expected  # type: ignore[arg-type]


def test_the_session_store_setting() -> None:
    local = session_store(Settings(web_session_store="local", web_session_hours=0.5))
    assert isinstance(local, MemorySessionStore)
    assert local.ttl_seconds == 1800
    assert isinstance(session_store(Settings()), RedisSessionStore)
    assert session_store(Settings()).ttl_seconds == 8 * 3600


def test_a_session_in_memory_expires() -> None:
    now = [1000.0]
    store = MemorySessionStore(ttl_seconds=60, clock=lambda: now[0])
    session = store.open(token_fingerprint(SUPPORT))
    now[0] += 59
    assert store.find(session.session_id) == session
    now[0] += 1
    assert store.find(session.session_id) is None


def test_a_session_in_redis_expires_and_keeps_no_token() -> None:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    store = RedisSessionStore(client, ttl_seconds=600)
    session = store.open(token_fingerprint(ADMIN))
    assert store.find(session.session_id) == session
    key = RedisSessionStore.key(session.session_id)
    assert key.startswith(REDIS_KEY_PREFIX)
    assert session.session_id not in key  # listing the keys gives no usable session id
    assert 590 <= int(client.ttl(key)) <= 600  # type: ignore[arg-type]
    stored = client.get(key)
    assert isinstance(stored, bytes)
    assert ADMIN.encode() not in stored
    store.close(session.session_id)
    assert client.exists(key) == 0
    assert store.find(session.session_id) is None
    assert store.find("") is None
