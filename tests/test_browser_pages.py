"""Every page opens at its own address in a real browser, and its tables fit a full-HD window."""

import pytest

from tests.browser_helpers import settled
from tests.conftest import running_dashboard

pytestmark = pytest.mark.browser

TITLES = {"scan_review": "Scan review", "batch_screening": "Batch screening", "evaluation": "Evaluation",
          "about": "About SAFEGEN", "reading": "Reading", "study_results": "Study results",
          "study_admin": "Study admin"}  # address: the page's title


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory, server_data):
    """A server of this module's own: no session has run app.py on it before the test."""
    with running_dashboard(tmp_path_factory, server_data) as url:
        yield url


def _overflowing_tables(page) -> list[list[int]]:
    """[content width, visible width] of each st.dataframe on the page that scrolls sideways."""
    widths = page.evaluate("""() => [...document.querySelectorAll("[data-testid='stDataFrame'] .dvn-scroller")]
                                    .map(e => [e.scrollWidth, e.clientWidth])""")
    return [w for w in widths if w[0] > w[1] + 1]


def test_every_page_opens_at_its_address_through_the_router(browser, fresh_server, artifacts_dir):
    """First a page's own address on a server that has not run app.py yet (Streamlit would run the file
    alone), then the root (which shows Scan review in place, no redirect), then every page's address."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        for path in ["about", "", *TITLES]:
            page.goto(f"{fresh_server}/{path}")
            page.get_by_role("heading", name=TITLES[path or "scan_review"], exact=True).wait_for()
            page.get_by_role("link", name="About & model card").wait_for()  # app.py's navigation ran
            assert page.url == f"{fresh_server}/{path}", f"/{path} ended at {page.url}"
            assert not page.get_by_text("Page not found").count(), f"/{path}: Page not found"
            # The About page's tables fit a 1920 px screen. (Evaluation's show only once an evaluation has
            # run, not on a clean clone; with the realistic run's long head names they scroll: README.)
            if path == "about":
                page.locator("[data-testid='stDataFrame']").first.wait_for()
                settled(page)
                assert not _overflowing_tables(page), f"/{path}: tables wider than the page {_overflowing_tables(page)}"
                page.screenshot(path=str(artifacts_dir / f"page_{path}.png"), full_page=True)
    finally:
        context.close()
