"""Reader-study widgets: the database once per process, log-in, the reading form and the canvas.

Pages call these; every query goes through :mod:`db.repository` (pages never write SQL). A
blinded (unaided) reader's page never loads a heatmap file: :func:`ui.study_reading.case_panel`
shows it only when the reader's session is in the AI arm.
"""

from __future__ import annotations

import json
import time

import numpy as np
import streamlit as st
from PIL import Image

from core.io import load_volume
from core.masks import unsafe_mask
from core.render import apply_window, overlay_heatmap, window_presets
from core.study_stats import likert_levels
from core.types import Volume
from db.migrate import upgrade
from db.models import Reader, Role
from db.repository import StudyError, authenticate, create_reader
from db.session import default_url, make_engine, make_session_factory, session_scope
from ui.state import Keys

CANVAS_SIDE = 512  # the longer side of the drawing canvas, screen pixels
DEFAULT_BRUSH = 12  # canvas pixels
MASK_RGB = "#00e5ff"


@st.cache_resource(show_spinner=False)
def study_db(url: str):
    """The session factory of the study database at ``url``, migrated to the newest schema (once per process)."""
    engine = make_engine(url)
    upgrade(engine)
    return make_session_factory(engine)


def session():
    """A unit of work on the study database ($SAFEGEN_DB_URL or data/safegen.db): commit or roll back."""
    return session_scope(study_db(default_url()))


def current_reader() -> Reader | None:
    reader_id = st.session_state.get(Keys.STUDY_READER_ID)
    if reader_id is None:
        return None
    with session() as s:
        return s.get(Reader, reader_id)


def has_accounts() -> bool:
    from sqlalchemy import func, select

    with session() as s:
        return bool(s.scalar(select(func.count(Reader.id))))


def login_box() -> Reader | None:
    """The signed-in reader, or a log-in form (a first-admin form on an empty database)."""
    reader = current_reader()
    if reader is not None:
        with st.sidebar:
            st.caption(f"Signed in as **{reader.username}** ({reader.role.value})")
            if st.button("Sign out", key=Keys.STUDY_SIGN_OUT):
                st.session_state.pop(Keys.STUDY_READER_ID, None)
                st.rerun()
        return reader
    first = not has_accounts()
    with st.form(Keys.STUDY_LOGIN):
        st.subheader("Create the first admin account" if first else "Sign in")
        username = st.text_input("User name", key=Keys.STUDY_USERNAME)
        password = st.text_input("Password", type="password", key=Keys.STUDY_PASSWORD)
        submitted = st.form_submit_button("Create account" if first else "Sign in")
    if submitted:
        try:
            with session() as s:
                found = create_reader(s, username, password, Role.ADMIN) if first else authenticate(s, username, password)
                found_id = None if found is None else found.id
        except StudyError as error:
            st.error(str(error))
            return None
        if found_id is None:
            st.error("Unknown user name or wrong password.")
            return None
        st.session_state[Keys.STUDY_READER_ID] = found_id
        st.rerun()
    return None


@st.cache_resource(show_spinner=False)
def default_tau() -> float:
    """The committed calibration's default tau (what SAFEGEN flags at), read once per process."""
    from core.scoring import CALIBRATION_FILE, Calibration

    calibration = Calibration.load(CALIBRATION_FILE)
    return calibration.tau(calibration.alpha)


@st.cache_resource(show_spinner=False, max_entries=8)
def case_volume(path: str) -> Volume:
    return load_volume(path)


@st.cache_data(show_spinner=False, max_entries=8)
def case_heatmap(path: str) -> np.ndarray:
    return np.load(path)


def canvas_size(rows: int, cols: int) -> tuple[int, int]:
    """Canvas (height, width) in screen pixels for a display slice: the longer side is CANVAS_SIDE."""
    scale = CANVAS_SIDE / max(rows, cols)
    return max(1, round(rows * scale)), max(1, round(cols * scale))


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
    peak = float(np.nanmax(heatmap))
    high = 1.0 if peak <= 1.0 else max(peak, tau + 1.0)  # probabilities (the head) or z units
    return Image.fromarray(overlay_heatmap(gray, heat, low=tau, high=high, opacity=0.5, mask=mask))


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
    st.markdown(f"**{text}**" + (" · keys 1-" + str(len(choices)) if shortcut else ""))
    columns = st.columns(len(choices))
    for i, (column, value) in enumerate(zip(columns, choices, strict=True)):
        column.button(_label(question, value), key=f"{key}.button.{i}", on_click=st.session_state.__setitem__,
                      args=(key, value), type="primary" if value == chosen else "secondary",
                      shortcut=SHORTCUT_KEYS[i] if shortcut else None, width="stretch")
    return chosen
