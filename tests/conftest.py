"""Shared fixtures: a running Streamlit server and a headless Chromium for the browser tests; a
throw-away PostgreSQL cluster and a database URL per backend for the database tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_LOGS: list[Path] = []  # the dashboards' logs, for the report of a failed browser test
CHROMIUM = os.environ.get("SAFEGEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server_data(tmp_path_factory) -> dict[str, str]:
    """The browser-test server's own study database URL and study folder (tests may fill them first)."""
    folder = tmp_path_factory.mktemp("server-data")
    return {"db_url": f"sqlite:///{folder / 'safegen.db'}", "studies_dir": str(folder / "studies")}


@pytest.fixture(autouse=True)
def _own_study_database_and_shared_folders(monkeypatch, tmp_path_factory):
    """Every test gets an empty study database of its own (unless it sets ``SAFEGEN_DB_URL`` itself), so
    a developer's ``data/safegen.db`` never changes what a page shows; and the server may read the
    test's temporary folders by name (``SAFEGEN_DATA_ROOTS``) besides the project's ``data/``."""
    monkeypatch.setenv("SAFEGEN_DB_URL", f"sqlite:///{tmp_path_factory.mktemp('db') / 'study.db'}")
    monkeypatch.setenv("SAFEGEN_DATA_ROOTS", os.pathsep.join([str(tmp_path_factory.getbasetemp()), str(ROOT / "data")]))


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory, server_data):
    """A real `streamlit run app.py` on a free loopback port; yields its base URL."""
    with running_dashboard(tmp_path_factory, server_data) as url:
        yield url


@contextlib.contextmanager
def running_dashboard(tmp_path_factory, server_data: dict[str, str]):
    """Start `streamlit run app.py` on a free loopback port, yield its base URL, stop it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    SERVER_LOGS.append(log)
    env = {**os.environ, "SAFEGEN_DB_URL": server_data["db_url"], "SAFEGEN_STUDIES_DIR": server_data["studies_dir"],
           "SAFEGEN_DATA_ROOTS": os.pathsep.join([str(tmp_path_factory.getbasetemp()), str(ROOT / "data")])}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start; log:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright; skips (with the reason) when it is missing."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium not found at {CHROMIUM}: run `make system-deps` as root (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _artifacts_folder() -> Path:
    folder = Path(os.environ.get("SAFEGEN_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where the browser tests put their screenshots: out/test-artifacts (SAFEGEN_TEST_ARTIFACTS overrides)."""
    return _artifacts_folder()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a browser test fails, report what each open page showed (its text, a screenshot in the
    artifacts folder) and the end of the dashboard's log: a CI log alone then tells why."""
    outcome = yield
    report = outcome.get_result()
    browser = item.funcargs.get("browser") if hasattr(item, "funcargs") else None
    if report.when != "call" or not report.failed or browser is None:
        return
    lines = []
    for i, context in enumerate(browser.contexts):
        for j, page in enumerate(context.pages):
            try:
                shot = _artifacts_folder() / f"FAILED-{item.name}-{i}-{j}.png"
                page.screenshot(path=str(shot), full_page=True, timeout=10_000)
                text = page.inner_text("body", timeout=10_000)
            except Exception as error:  # a closed or hung page: say so and go on
                text, shot = f"(could not read the page: {error})", None
            lines.append(f"--- page {i}.{j} at {page.url} (screenshot {shot}):\n{text[:3000]}")
    for log in SERVER_LOGS:
        if log.exists():
            lines.append(f"--- {log} (end):\n{log.read_text(errors='replace')[-3000:]}")
    report.sections.append(("browser pages and server log", "\n".join(lines)))


@pytest.fixture
def page(browser, streamlit_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL cluster (:mod:`tests.postgres_helpers`) for the session; skips, with
    the reason, where the server or the driver is missing."""
    from tests.postgres_helpers import ThrowawayPostgres, why_unavailable

    if reason := why_unavailable():
        print(reason)
        pytest.skip(reason)
    cluster = ThrowawayPostgres().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty study database on each backend the app supports: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres").new_database()
