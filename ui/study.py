"""Reader-study widgets: the database once per process, log-in, the reading form and the canvas.

Pages call these; every query goes through :mod:`db.repository` (pages never write SQL). A
blinded (unaided) reader's page never loads a heatmap file: :func:`ui.study_reading.case_panel`
shows it only when the reader's session is in the AI arm.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import re
import secrets
import sys
import time

import numpy as np
import streamlit as st
from itsdangerous import BadSignature, TimestampSigner
from PIL import Image

from core.io import load_volume
from core.masks import unsafe_mask
from core.render import apply_window, overlay_heatmap, window_presets
from core.study_stats import likert_levels
from core.types import Volume
from db.migrate import upgrade
from db.models import Reader, Role
from db import repository
from db.repository import SignInRefused, StudyError, create_first_admin, lock_seconds, sign_in
from db.session import default_url, make_engine, make_session_factory, read_scope, session_scope
from ui.state import Keys

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain_markdown(text: str) -> str:
    """User-supplied ``text`` (study instructions, titles, questions) for ``st.markdown`` and the
    message elements: every markdown character escaped, so it shows as typed and never becomes an
    image fetched from another host, a link, HTML or a Streamlit directive; line breaks kept."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


CANVAS_SIDE = 512  # the longer side of the drawing canvas, screen pixels
DEFAULT_BRUSH = 12  # canvas pixels
PEN_RGB = "#ff40ff"  # the reader's pen and marks: magenta, never SAFEGEN's cyan outline (core.render.MASK_OUTLINE_RGB)
AI_COLORMAP = "inferno"  # the AI arm's heatmap, on the canvas and in NiiVue (both know the name)
AI_OPACITY = 0.5


@st.cache_resource(show_spinner=False)
def study_db(url: str):
    """The session factory of the study database at ``url``, migrated to the newest schema (once per process)."""
    engine = make_engine(url)
    upgrade(engine)
    return make_session_factory(engine)


def session():
    """A unit of work on the study database ($SAFEGEN_DB_URL or data/safegen.db): commit or roll back."""
    return session_scope(study_db(default_url()))


def read_session():
    """A read-only unit of work on the same database (:func:`db.session.read_scope`), for what a page
    only shows: it never waits for a save (or holds one up) and cannot write."""
    return read_scope(study_db(default_url()))


SESSION_COOKIE = "safegen_session"
IDLE_TIMEOUT_S = 30 * 60  # a sign-in lasts this long after the reader's last action, across reloads
SESSION_SECRET_ENV = "SAFEGEN_SESSION_SECRET"


@st.cache_resource(show_spinner=False)
def _session_signer() -> TimestampSigner:
    """Signs the session cookie: ``$SAFEGEN_SESSION_SECRET``, else a random key per server process
    (a restart then signs everyone out; several server processes need the variable)."""
    return TimestampSigner(os.environ.get(SESSION_SECRET_ENV) or secrets.token_urlsafe(32), salt="safegen-session")


def _write_cookie(value: str, max_age: int) -> None:
    """Set (or, with ``max_age`` 0, delete) the session cookie in the reader's browser. A component's
    frame has the app's origin, so it writes the app page's cookie; ``SameSite=Strict``. The cookie is
    a signed reader id with its time, readable by the page's scripts (Streamlit offers no HttpOnly
    cookie); user text is never rendered as HTML (:func:`plain_markdown`)."""
    import streamlit.components.v1 as components

    components.html(f"<script>window.parent.document.cookie = '{SESSION_COOKIE}={value}; path=/; "
                    f"max-age={max_age}; SameSite=Strict';</script>", height=0)


def _sign_in_session(reader_id: int) -> None:
    st.session_state[Keys.STUDY_READER_ID] = reader_id
    st.session_state[Keys.STUDY_LAST_ACTION] = time.time()
    st.session_state[Keys.STUDY_COOKIE_WRITTEN] = 0.0  # due: written by the next run (a rerun would drop it)


def sign_out() -> None:
    for key in (Keys.STUDY_READER_ID, Keys.STUDY_LAST_ACTION):
        st.session_state.pop(key, None)
    st.session_state[Keys.STUDY_SIGNED_OUT] = True  # this browser session ignores the cookie from now on
    st.session_state[Keys.STUDY_COOKIE_WRITTEN] = None  # due: deleted by the next run


def _sync_cookie(reader_id: int | None) -> None:
    """Write the session cookie when it is due: just signed in or out, or at most once a minute while
    the reader works (its clock restarts with their activity)."""
    written = st.session_state.get(Keys.STUDY_COOKIE_WRITTEN, 0.0)
    with st.sidebar:
        if reader_id is None and Keys.STUDY_COOKIE_WRITTEN in st.session_state and written is None:
            _write_cookie("", 0)
            st.session_state.pop(Keys.STUDY_COOKIE_WRITTEN)
        elif reader_id is not None and time.time() - (written or 0.0) > 60:
            _write_cookie(_session_signer().sign(str(reader_id)).decode(), IDLE_TIMEOUT_S)
            st.session_state[Keys.STUDY_COOKIE_WRITTEN] = time.time()


def current_reader() -> Reader | None:
    """The signed-in reader of this browser session: signed in here, or (after a reload) by the
    session cookie, either within :data:`IDLE_TIMEOUT_S` of their last action; None otherwise."""
    reader_id = st.session_state.get(Keys.STUDY_READER_ID)
    if reader_id is not None and time.time() - st.session_state.get(Keys.STUDY_LAST_ACTION, 0.0) > IDLE_TIMEOUT_S:
        sign_out()
        st.info("You were signed out after 30 minutes without activity.")
        reader_id = None
    if reader_id is None and not st.session_state.get(Keys.STUDY_SIGNED_OUT):
        try:
            reader_id = int(_session_signer().unsign(st.context.cookies.get(SESSION_COOKIE) or "",
                                                     max_age=IDLE_TIMEOUT_S))
        except (BadSignature, ValueError):
            reader_id = None
    reader = None
    if reader_id is not None:
        with read_session() as s:
            reader = repository.account(s, reader_id)
        if reader is None:
            sign_out()
        else:
            if st.session_state.get(Keys.STUDY_READER_ID) != reader_id:
                _sign_in_session(reader_id)  # back after a reload, by the cookie
            st.session_state[Keys.STUDY_LAST_ACTION] = time.time()
    _sync_cookie(None if reader is None else reader.id)
    return reader


def has_accounts() -> bool:
    with read_session() as s:
        return repository.has_accounts(s)


SETUP_TOKEN_ENV = "SAFEGEN_SETUP_TOKEN"


def setup_token() -> str:
    """The token that lets a visitor of an empty database create the first admin: ``$SAFEGEN_SETUP_TOKEN``,
    else a random one made once per server process and printed to the server's log (as Jupyter does).
    Worthless once an account exists; ``python -m db.admin create-admin NAME`` needs no token."""
    return os.environ.get(SETUP_TOKEN_ENV) or _random_setup_token()


@st.cache_resource(show_spinner=False)
def _random_setup_token() -> str:
    token = secrets.token_urlsafe(16)
    print(f"SAFEGEN: the study database has no accounts. To create the first admin, open the Reading page "
          f"and enter the setup token {token} (or run on the server: python -m db.admin create-admin NAME)",
          file=sys.stderr, flush=True)
    return token


def login_box() -> Reader | None:
    """The signed-in reader, or a log-in form (on an empty database: the first admin, with the setup token).

    Failed sign-ins are throttled per name by :func:`db.repository.sign_in` and per browser session
    here, with the same back-off (:func:`db.repository.lock_seconds`).
    """
    reader = current_reader()
    if reader is not None:
        with st.sidebar:
            st.caption(f"Signed in as **{reader.username}** ({reader.role.value})")
            if st.button("Sign out", key=Keys.STUDY_SIGN_OUT):
                sign_out()
                st.rerun()
        return reader
    first = not has_accounts()
    if first:
        setup_token()  # made (and printed to the server's log) when the first-admin form is first shown
    with st.form(Keys.STUDY_LOGIN):
        st.subheader("Create the first admin account" if first else "Sign in")
        if first:
            token = st.text_input("Setup token", type="password", key=Keys.STUDY_SETUP_TOKEN,
                                  help="Printed in the log of the server that runs the dashboard. Or create "
                                       "the admin on the server: `python -m db.admin create-admin NAME`.")
        username = st.text_input("User name", key=Keys.STUDY_USERNAME)
        password = st.text_input("Password", type="password", key=Keys.STUDY_PASSWORD)
        submitted = st.form_submit_button("Create account" if first else "Sign in")
    if not submitted:
        return None
    wait = st.session_state.get(Keys.STUDY_SIGN_IN_WAIT_UNTIL, 0.0) - time.time()
    if wait > 0:
        st.error(f"Too many failed sign-ins in this browser: try again in {math.ceil(wait)} s.")
        return None
    try:
        if first:
            if not hmac.compare_digest(token.strip().encode(), setup_token().encode()):
                raise SignInRefused("Wrong setup token: it is printed in the log of the server that runs the dashboard.")
            with session() as s:
                found_id = create_first_admin(s, username, password).id
        else:
            found_id = sign_in(session, username, password, open_read=read_session)
    except SignInRefused as error:
        failures = st.session_state.get(Keys.STUDY_SIGN_IN_FAILURES, 0) + 1
        st.session_state[Keys.STUDY_SIGN_IN_FAILURES] = failures
        st.session_state[Keys.STUDY_SIGN_IN_WAIT_UNTIL] = time.time() + lock_seconds(failures)
        st.error(str(error))
        return None
    except StudyError as error:
        st.error(str(error))
        return None
    for key in (Keys.STUDY_SIGN_IN_FAILURES, Keys.STUDY_SIGN_IN_WAIT_UNTIL, Keys.STUDY_SIGNED_OUT):
        st.session_state.pop(key, None)
    _sign_in_session(found_id)
    st.rerun()


def require_screening_access() -> None:
    """Scan review, Batch screening and Evaluation: open to anyone while the study database has no
    accounts (a demo, one person's machine); once it has, to signed-in admins only, so a reader of a
    blinded study cannot score its cases (or see SAFEGEN's output) outside the study. Stops the page
    with a sign-in form or a refusal otherwise."""
    if not has_accounts():
        return
    reader = login_box()
    if reader is None:
        st.stop()
    if reader.role is not Role.ADMIN:
        st.error("This server runs reader studies: scoring scans is for study admins. Your studies are on the "
                 "Reading page.")
        st.stop()


@st.cache_resource(show_spinner=False)
def default_tau() -> float:
    """The committed calibration's default tau (what SAFEGEN flags at), read once per process."""
    from core.profiles import CALIBRATION_FILE
    from core.scoring import Calibration

    calibration = Calibration.load(CALIBRATION_FILE)
    return calibration.tau(calibration.alpha)


@st.cache_resource(show_spinner=False, max_entries=8)
def case_volume(path: str) -> Volume:
    return load_volume(path)


@st.cache_data(show_spinner=False, max_entries=8)
def case_heatmap(path: str) -> np.ndarray:
    return np.load(path)


def canvas_size(rows: int, cols: int, spacing_rc: tuple[float, float] = (1.0, 1.0)) -> tuple[int, int]:
    """Canvas (height, width) in screen pixels for a display slice of ``rows x cols`` pixels of
    ``spacing_rc`` mm: true aspect (a 2 x 3 mm pixel is drawn 2:3), the longer side CANVAS_SIDE."""
    height_mm, width_mm = rows * float(spacing_rc[0]), cols * float(spacing_rc[1])
    scale = CANVAS_SIDE / max(height_mm, width_mm)
    return max(1, round(height_mm * scale)), max(1, round(width_mm * scale))


def canvas_to_mask(rgba: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The drawn pixels of a canvas image (alpha > 0) resampled to a display slice of ``shape``.

    A slice pixel is marked when at least half of the canvas pixels over it are drawn.
    """
    alpha = np.asarray(rgba)[..., 3] > 0
    resized = Image.fromarray((alpha * 255).astype(np.uint8)).resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(resized) >= 128


def slice_picture(volume: Volume, index: int, window_name: str, heatmap: np.ndarray | None, tau: float,
                  flagged: bool | None = None) -> Image.Image:
    """The display slice as an RGB picture, with SAFEGEN's heatmap above tau when given (only on a
    flagged slice when the case stored its slice flags: :func:`core.masks.unsafe_mask`)."""
    gray = apply_window(volume.display_slice(index), window_presets(volume)[window_name])
    if heatmap is None:
        return Image.fromarray(gray).convert("RGB")
    heat = volume.display_slice_of(heatmap, index)
    mask = unsafe_mask(heat, tau, None if flagged is None else np.array([flagged])).astype(bool)
    return Image.fromarray(overlay_heatmap(gray, heat, low=tau, high=heat_top(heatmap, tau), opacity=AI_OPACITY,
                                           cmap=AI_COLORMAP, mask=mask))


def heat_top(heatmap: np.ndarray, tau: float) -> float:
    """The value at the top of a case heatmap's colour scale: 1 for probabilities (the head's maps),
    else the hottest voxel, at least ``tau + 1`` (z units)."""
    peak = float(np.nanmax(heatmap))
    return 1.0 if peak <= 1.0 else max(peak, tau + 1.0)


def drawn_masks() -> dict:
    """(case id, arm, display slice) -> boolean mask drawn in this visit, not saved yet."""
    return st.session_state.setdefault(Keys.STUDY_MASKS, {})


def reading_seconds(read_key: tuple[int, str]) -> float:
    """Seconds since this case (in this arm) was opened in this browser session (the clock starts on first view)."""
    opened = st.session_state.setdefault(Keys.STUDY_OPENED, {})
    opened.setdefault(read_key, time.monotonic())
    return time.monotonic() - opened[read_key]


def restart_clock(read_key: tuple[int, str]) -> None:
    st.session_state.setdefault(Keys.STUDY_OPENED, {})[read_key] = time.monotonic()


SHORTCUT_KEYS = "123456789"


def _choices(question: dict) -> list:
    """A Likert or choice question's answers: 1..levels, or the options."""
    if question["kind"] == "likert":
        return list(range(1, likert_levels(question) + 1))
    return list(question["options"])


def _label(question: dict, value) -> str:
    labels = question.get("labels")
    if question["kind"] == "likert" and labels:
        return f"{value} {labels[value - 1]}"
    return str(value)


def question_widgets(questions: list[dict], stored: dict, shows_ai: bool, key_prefix: str) -> dict:
    """The study's questions, pre-filled with the stored answers; returns key -> value (None = blank).

    Likert and choice questions are rows of buttons; the first of them answers to the number keys
    (1 = its first button), so a reader can rate without the mouse. Yes/no is a radio, a checklist
    a multiselect, text a text area.
    """
    values = {}
    shortcuts_used = False
    for question in questions:
        if question.get("arm") == "ai" and not shows_ai:
            continue
        key = f"{key_prefix}.{question['key']}"
        previous = stored.get(question["key"])
        if question["kind"] in ("likert", "choice"):
            choices = _choices(question)
            shortcut = not shortcuts_used and len(choices) <= len(SHORTCUT_KEYS)
            shortcuts_used |= shortcut
            values[question["key"]] = _button_row(question, choices, previous, key, shortcut)
        elif question["kind"] == "yes_no":
            choice = st.radio(question["text"], ["yes", "no"], horizontal=True, key=key,
                              index=None if previous is None else (0 if previous else 1))
            values[question["key"]] = None if choice is None else choice == "yes"
        elif question["kind"] == "checklist":
            ticked = json.loads(previous) if previous else []
            values[question["key"]] = st.multiselect(question["text"], question["options"], default=ticked, key=key)
        else:
            values[question["key"]] = st.text_area(question["text"], value=previous or "", key=key) or None
    return values


def _button_row(question: dict, choices: list, previous, key: str, shortcut: bool):
    """One button per answer (the chosen one highlighted); the answer lives in ``session_state[key]``."""
    if key not in st.session_state:
        st.session_state[key] = previous
    chosen = st.session_state[key]
    text = question["text"]
    if question["kind"] == "likert" and not question.get("labels"):
        text += f" (1 = {question.get('low', 'lowest')}, {len(choices)} = {question.get('high', 'highest')})"
    st.markdown(f"**{plain_markdown(text)}**" + (" · keys 1-" + str(len(choices)) if shortcut else ""))
    columns = st.columns(len(choices))
    for i, (column, value) in enumerate(zip(columns, choices, strict=True)):
        column.button(_label(question, value), key=f"{key}.button.{i}", on_click=st.session_state.__setitem__,
                      args=(key, value), type="primary" if value == chosen else "secondary",
                      shortcut=SHORTCUT_KEYS[i] if shortcut else None, width="stretch")
    return chosen
