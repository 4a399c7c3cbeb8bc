"""Helpers of the browser tests: sign in, pick in a selectbox, wait for Streamlit to settle, answer buttons."""

from __future__ import annotations


def sign_in(browser, url: str, page_name: str, username: str, password: str, *,
            viewport: tuple[int, int] = (1400, 1100)):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("link", name=page_name).click()
    heading = page.get_by_role("heading", name=page_name, exact=True)
    heading.wait_for()  # Scan review asks for a sign-in too: make sure this is the page's form
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {username}").wait_for()
    heading.wait_for()
    return context, page


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the selectbox or multiselect labelled ``label``."""
    widget = page.locator("[data-testid='stSelectbox'], [data-testid='stMultiSelect']").filter(
        has=page.get_by_text(label, exact=True))
    if widget.get_attribute("data-testid") == "stMultiSelect" and widget.get_by_text(option, exact=True).count():
        return  # already chosen (the form keeps its values after a submit)
    for attempt in range(3):  # a rerun that lands while the list is open closes it: open it again
        widget.locator("input").first.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=10_000)
            break
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    page.keyboard.press("Escape")


def answer_button(page, question: str, index: int):
    """The ``index``-th answer button of a question (buttons carry their widget key as a class)."""
    return page.locator(f"[data-stale='false'][class*='-{question}-button-{index}'] button")


def choose(page, question: str, index: int) -> None:
    """Click an answer button and wait until the page shows it chosen and the run is over.

    A click that lands while a run (e.g. the canvas's first value) is redrawing the buttons can hit an
    element that is about to be replaced; then the button is clicked again, up to three times.
    """
    chosen = answer_button(page, question, index).and_(page.locator("[data-testid='stBaseButton-primary']"))
    for attempt in range(3):
        settled(page)
        answer_button(page, question, index).click()
        try:
            chosen.wait_for(timeout=15_000)
            break
        except Exception:
            if attempt == 2:
                raise
    settled(page)


def press(page, key: str) -> None:
    """A key press on the page itself (no widget focused), as a reader's shortcut."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)


def session_is(page, text: str) -> None:
    """Wait until the Session selectbox shows ``text``."""
    from playwright.sync_api import expect

    expect(page.get_by_role("combobox", name="Session")).to_have_value(text, timeout=60_000)


def progress(page, text: str) -> None:
    """Wait for the progress text and for the rerun to finish (no element of the previous run left)."""
    page.get_by_text(text).wait_for()
    settled(page)
    save_button(page).wait_for()


def settled(page) -> None:
    """Wait until the script run is over and nothing of the previous run is left on the page."""
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")


def save_button(page):
    return page.locator("[data-stale='false']").get_by_role("button", name="Save and next")


def save_and_see(page, text: str, tries: int = 5) -> None:
    """Click "Save and next" until the progress ``text`` shows, then wait as :func:`progress` does.

    A click that lands in the instant a rerun redraws the page is lost (seen on a loaded machine: the
    progress stayed put for 60 s), so it is clicked again. Clicking again cannot save anything twice:
    the next case has nothing answered yet (refused), and the last case would be saved with the same
    answers.
    """
    for attempt in range(tries):
        save_button(page).click()
        try:
            page.get_by_text(text).wait_for(timeout=20_000)
            break
        except Exception:
            if attempt == tries - 1:
                raise
    progress(page, text)
