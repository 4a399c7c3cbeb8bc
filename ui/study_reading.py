"""The Reading page's pieces: pick a study, a session and a case, show the case, draw, answer, save."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st

from core.masks import unsafe_mask
from core.render import window_presets
from core.types import Volume
from core.viewer_layers import heatmap_layer, outline_layer
from db.models import Arm, Reader
from db.session import OperationalError, retry_when_busy
from workflows.studies import case_ai_settings
from db.repository import (
    StudyError,
    assignment,
    assignments,
    check_session_open,
    find_read,
    load_draft,
    open_case,
    read_masks,
    reader_case,
    reading_list,
    save_draft,
    save_read,
    studies_of,
    study_by_id,
)
from ui.study import (
    AI_COLORMAP,
    AI_OPACITY,
    DEFAULT_BRUSH,
    PEN_RGB,
    canvas_size,
    canvas_to_mask,
    case_heatmap,
    case_volume,
    default_tau,
    drawn_masks,
    heat_top,
    plain_markdown,
    question_widgets,
    read_session,
    reading_seconds,
    restart_clock,
    session,
    slice_picture,
)
from ui.state import Keys
from ui.viewer import OUTLINE_COLORMAP, VIEWER_NIIVUE, clamp_slice_number, kept, niivue_view, viewer_choice

ARM_NAMES = {Arm.UNAIDED: "images only", Arm.AI: "with SAFEGEN heatmaps"}


@dataclass(frozen=True)
class StudyView:
    """What the reading page needs of a study and of the reader's current session in it."""

    id: int
    title: str
    instructions: str
    questions: list
    arm: Arm
    min_read_seconds: float

    @property
    def shows_ai(self) -> bool:
        return self.arm is Arm.AI


def choose_study(reader: Reader) -> StudyView | None:
    """Study selector, instructions and (in a crossed study) the session: one arm per session."""
    with read_session() as s:
        studies = [(st_.id, st_.title) for st_ in studies_of(s, reader)]
    if not studies:
        return None
    titles = dict(studies)
    study_id = st.selectbox("Study", list(titles), format_func=titles.get, key=Keys.STUDY_ID)
    with read_session() as s:
        study = study_by_id(s, study_id)
        try:
            sessions = [(a.arm, a.block) for a in assignments(s, reader, study_id)]
            current = assignment(s, reader, study_id).arm
        except StudyError:
            return None  # an admin who is not a reader of this study
        title, instructions, questions = study.title, study.instructions, list(study.questions)
        minimum = float((study.settings or {}).get("min_read_seconds", 0.0))
    arm = current
    if len(sessions) > 1:
        names = {a: f"Session {block + 1} of {len(sessions)}: {ARM_NAMES[a]}" for a, block in sessions}
        # Follow the reader's current session, on arrival and when they finish one and the next opens:
        # the widget's key names the current session, so a new one opens on it. (Setting one widget's
        # value instead lost a race: a rerun the browser sent with the old value kept session 1.)
        arm = st.selectbox("Session", list(names), index=list(names).index(current), format_func=names.get,
                           key=f"{Keys.STUDY_SESSION}.{study_id}.{current.value}",
                           help="This study shows every case twice, once per session; a session opens "
                                "when the one before it is done.")
    if instructions:
        with st.expander("Instructions", icon=":material/info:"):
            st.markdown(plain_markdown(instructions))  # as typed: no remote images, links or HTML
    if minimum:
        st.caption(f"This study asks you to look at each case for at least {minimum:.0f} s before you submit.")
    return StudyView(study_id, title, instructions, questions, Arm(arm), minimum)


def choose_case(reader: Reader, study: StudyView) -> int | None:
    """Progress bar, the case selector and previous / next: after a save (or on arrival) the first
    case not done yet. None when the session is not open yet."""
    try:
        with read_session() as s:
            check_session_open(s, reader, study.id, study.arm)
            items = [(case.id, case.name, read is not None and read.submitted_at is not None)
                     for case, read in reading_list(s, reader, study.id, study.arm)]
    except StudyError as error:
        st.info(f"This session is not open yet: {error}.")
        return None
    done = sum(1 for *_, finished in items if finished)
    if message := st.session_state.pop(Keys.STUDY_MESSAGE, None):
        st.toast(message, icon=":material/check:")  # a toast: the canvas below stays where it was
    if done == len(items):
        st.success("All cases of this session are done. Thank you! You can open any case to change it.")
    ids = [case_id for case_id, *_ in items]
    if st.session_state.pop(Keys.STUDY_NEXT_CASE, False) or st.session_state.get(Keys.STUDY_CASE) not in ids:
        st.session_state[Keys.STUDY_CASE] = next((case_id for case_id, _, finished in items if not finished), ids[0])
    labels = {case_id: f"{i + 1}. {name}" + (" ✓" if finished else "") for i, (case_id, name, finished) in enumerate(items)}
    # One row: the case list, how far the reader is, previous / next (the canvas below must fit a laptop window).
    picker, bar, back, forward = st.columns([5, 3, 1, 1], vertical_alignment="bottom")
    bar.progress(done / len(items), text=f"{done} of {len(items)} cases done")
    position = ids.index(st.session_state[Keys.STUDY_CASE])
    back.button("◀", key="study.previous", help="Previous case (Page Up)", shortcut="PageUp", disabled=position == 0,
                on_click=st.session_state.__setitem__, args=(Keys.STUDY_CASE, ids[max(position - 1, 0)]))
    forward.button("▶", key="study.next", help="Next case (Page Down)", shortcut="PageDown",
                   disabled=position == len(ids) - 1, on_click=st.session_state.__setitem__,
                   args=(Keys.STUDY_CASE, ids[min(position + 1, len(ids) - 1)]))
    return picker.selectbox("Case (your order)", ids, format_func=labels.get, key=Keys.STUDY_CASE,
                            help="Go back to any case to change its answers; ✓ = saved.")


def case_panel(reader: Reader, study: StudyView, case_id: int) -> None:
    """The case: on the left the mask canvas at the top (all of it on a 1440 x 900 screen; NiiVue, when
    chosen for a 3-D case, under it: the canvas follows its crosshair); on the right what chooses the
    slice (viewer, slice slider), window, the optional AI heatmap and the brush, then the questions and save."""
    arm = study.arm
    with read_session() as s:  # every view but the first: read-only, never queued behind a save
        loaded = _load_case(s, find_read(s, reader, case_id, arm), reader, case_id, arm)
    if loaded is None:  # the first visit creates the reader's read of the case
        with session() as s:
            loaded = _load_case(s, open_case(s, reader, case_id, arm), reader, case_id, arm)
    version, stored_answers, stored_masks, case, draft = loaded
    scan_path, heatmap_path, name = case.scan_path, case.ai_heatmap_path, case.name
    ai_tau, ai_flags = case_ai_settings(case)
    read_key = (case_id, arm.value)
    if draft is not None:  # the form as the reader left it (a reload, a sign-out): it mirrors the widgets
        draft_answers, draft_masks, saved_at = draft
        stored_answers = {**stored_answers, **draft_answers}
        for index, mask in draft_masks.items():
            drawn_masks().setdefault((case_id, arm.value, index), mask)
        shown = st.session_state.setdefault(Keys.STUDY_DRAFT_SHOWN, set())
        if (read_key, version) not in shown:
            shown.add((read_key, version))
            st.info(f"Restored the answers and marks you had not saved yet (autosaved {saved_at:%H:%M:%S} UTC).")
    reading_seconds(read_key)  # start the clock on first view
    volume = case_volume(scan_path)
    left, right = st.columns([3, 2])
    # All of the canvas fits a laptop window (1440 x 900): it stands at the top of the case on the left,
    # what chooses its slice, window and overlay at the top of the right column above the questions, and
    # NiiVue (3-D, when chosen; it needs the width) under the canvas.
    canvas_box, below = left.container(), left.container()
    tools = right.container()
    heatmap, tau, ai_layers = None, 0.0, None
    with tools:
        if study.shows_ai and heatmap_path:  # blinded arms never reach this block: no AI output, not even NiiVue's
            show_ai = st.toggle("Show SAFEGEN heatmap", value=True, key=Keys.STUDY_SHOW_AI)
            case_tau = default_tau() if ai_tau is None else ai_tau
            if show_ai:
                heatmap, tau = case_heatmap(heatmap_path), case_tau

            def ai_layers() -> list[dict]:
                return _niivue_overlays(case_id, arm, volume, heatmap_path, case_tau, ai_flags, show_ai)

    index, window, on_niivue = _slice_on_screen(volume, case_id, arm, ai_layers, tools=tools, below=below)
    flagged = None if ai_flags is None else bool(ai_flags[index])
    picture = slice_picture(volume, index, window, heatmap, tau, flagged)
    rows, cols = volume.display_slice(index).shape
    key = (case_id, arm.value, index)
    cleared = st.session_state.setdefault(Keys.STUDY_CLEARED, {})
    base = np.zeros((rows, cols), bool) if key in cleared else stored_masks.get(index, np.zeros((rows, cols), bool))
    shown = drawn_masks().get(key, base)
    picture = _tint(picture, shown)
    height, width = canvas_size(rows, cols, volume.display_spacing())
    from streamlit_drawable_canvas import st_canvas  # only importable inside a Streamlit run

    with canvas_box:
        result = st_canvas(background_image=picture.resize((width, height)), height=height, width=width,
                           drawing_mode="freedraw", stroke_width=st.session_state.get(Keys.STUDY_BRUSH, DEFAULT_BRUSH),
                           stroke_color=PEN_RGB, return_image_data=True,
                           key=f"canvas.{case_id}.{arm.value}.{index}.{cleared.get(key, 0)}")
        if result is not None and getattr(result, "image_data", None) is not None and result.image_data[..., 3].any():
            drawn_masks()[key] = base | canvas_to_mask(result.image_data, (rows, cols))
        at = " (at NiiVue's crosshair)" if on_niivue else ""
        st.caption(f"{name} · slice {index + 1} of {volume.n_slices}{at} · marked pixels on this slice: "
                   f"{int(drawn_masks().get(key, base).sum())}")
    with tools:
        brush, clear = st.columns(2, vertical_alignment="bottom")
        brush.slider("Brush", 2, 40, DEFAULT_BRUSH, key=Keys.STUDY_BRUSH)
        if clear.button("Clear this slice's mask", key=f"study.clear.{case_id}.{arm.value}.{index}"):
            cleared[key] = cleared.get(key, 0) + 1
            drawn_masks()[key] = np.zeros((rows, cols), bool)
            st.rerun()
        st.divider()
    with right:
        values = question_widgets(study.questions, stored_answers, study.shows_ai,
                                  f"{Keys.STUDY_ANSWER}.{case_id}.{arm.value}.{version}")
        save_next = st.button("Save and next", type="primary", key=f"study.save_next.{case_id}.{arm.value}.{version}",
                              shortcut="Ctrl+Enter", help="Ctrl+Enter")
        save_draft = st.button("Save draft", key=f"study.save_draft.{case_id}.{arm.value}.{version}")
        st.caption("Keys: 1-9 answer the first rating question · Ctrl+Enter save and next · "
                   "Page Up / Page Down previous / next case.")
        if save_next or save_draft:
            _save(reader, study, case_id, version, values, submit=bool(save_next))
        else:
            _autosave(reader, study, case_id, version, values)


def _slice_on_screen(volume: Volume, case_id: int, arm: Arm, niivue_overlays: Callable[[], list[dict]] | None, *,
                     tools, below) -> tuple[int, str, bool]:
    """The viewer the reader chose for a case (:func:`ui.viewer.viewer_choice`, 3-D cases only) and
    the display slice the drawing canvas shows.

    Args:
        volume: the case's scan.
        case_id, arm: the case and the reader's arm: one NiiVue component per case and arm.
        niivue_overlays: makes NiiVue's overlay layers (the AI arm's, :func:`_niivue_overlays`); None
            (a blinded arm, or a case without a heatmap) gives NiiVue the scan alone.
        tools, below: containers: the viewer choice, slice slider and window go in ``tools`` (beside
            the canvas), NiiVue in ``below`` (under the canvas, where it has the width).

    Returns:
        the slice index (0-based): NiiVue's crosshair when NiiVue shows, else the slice slider's; the
        window's name; whether NiiVue shows.
    """
    window_key, slice_key = f"{Keys.STUDY_WINDOW}.{case_id}", f"{Keys.STUDY_SLICE}.{case_id}"
    with tools:
        chosen = viewer_choice(volume, Keys.STUDY_VIEWER)
    if chosen == VIEWER_NIIVUE:
        with below:
            index = niivue_view(volume, f"study:{case_id}:{arm.value}",
                                niivue_overlays() if niivue_overlays is not None else None,
                                window_key=window_key, slice_key=slice_key,
                                follows="the drawing canvas above shows the slice at its crosshair")
        if index is not None:  # None: too large to send, the slider shows it
            return index, st.session_state[window_key], True
    index = 0
    with tools:
        if volume.is_3d:
            clamp_slice_number(slice_key, volume.n_slices)  # the middle slice on arrival, NiiVue's when back from it
            index = st.slider("Slice", 1, volume.n_slices, key=slice_key) - 1
        window = st.selectbox("Window / level", list(window_presets(volume)), key=window_key)
    return index, window, False


def _niivue_overlays(case_id: int, arm: Arm, volume: Volume, heatmap_path: str, tau: float,
                     flags: np.ndarray | None, shown: bool) -> list[dict]:
    """NiiVue's overlays in the AI arm: the case's stored heatmap above its tau and the outline of
    SAFEGEN's mask (:func:`core.masks.unsafe_mask` on the stored slice flags, as the canvas's
    :func:`ui.study.slice_picture`), on the scan's grid. A hidden heatmap (``shown`` False) is the
    same layers at opacity 0: a new component would lose the crosshair and move the canvas.
    Never called in a blinded arm.
    """
    def layers() -> tuple[bytes, bytes]:
        heatmap = case_heatmap(heatmap_path)
        return (heatmap_layer(heatmap, volume.affine, tau, heat_top(heatmap, tau)),
                outline_layer(unsafe_mask(heatmap, tau, flags), volume.affine))

    flag_key = None if flags is None else tuple(bool(f) for f in flags)
    heat, outline = kept(Keys.STUDY_NIIVUE_MAPS, (case_id, arm.value, tau, flag_key), layers)
    return [{"data": heat, "name": f"safegen_heatmap_above_tau{tau:g}.nii.gz", "colormap": AI_COLORMAP,
             "opacity": AI_OPACITY if shown else 0.0},
            {"data": outline, "name": f"safegen_mask_outline_tau{tau:g}.nii.gz", "colormap": OUTLINE_COLORMAP,
             "opacity": 1.0 if shown else 0.0}]


def _load_case(s, read, reader: Reader, case_id: int, arm: Arm) -> tuple | None:
    """What the case panel shows of ``read`` (None: nothing, as there is no read yet): its version,
    stored answers and masks, the case as the reader may see it (no truth; no AI output in a blinded
    arm) and their draft."""
    if read is None:
        return None
    answers = {a.question: (a.value_int if a.value_text is None else a.value_text) for a in read.answers}
    case = reader_case(s, reader, case_id, arm)
    return read.version, answers, read_masks(read), case, load_draft(s, reader, case_id, arm)


def _drawn_on(case_id: int, arm: Arm) -> dict[int, np.ndarray]:
    """Display slice -> the mask drawn in this visit on one case in one arm (not saved yet)."""
    return {index: mask for (case, arm_, index), mask in drawn_masks().items() if (case, arm_) == (case_id, arm.value)}


def _autosave(reader: Reader, study: StudyView, case_id: int, version: int, values: dict) -> None:
    """Store the open form as the read's draft when it changed since this page last stored it (the
    first view of a case only notes what it shows). Never in the way: a refused or failed autosave
    is left to the next save, which reports it."""
    masks = _drawn_on(case_id, study.arm)
    state = (json.dumps(values, sort_keys=True, default=str),
             tuple((i, hashlib.sha1(np.packbits(m).tobytes()).hexdigest()) for i, m in sorted(masks.items())))
    autosaved = st.session_state.setdefault(Keys.STUDY_AUTOSAVED, {})
    key = (case_id, study.arm.value, version)
    if autosaved.setdefault(key, state) == state:
        return
    try:
        with session() as s:
            save_draft(s, reader, case_id, expected_version=version, answers=values, masks=masks, arm=study.arm)
    except (StudyError, OperationalError):
        return
    autosaved[key] = state
    st.caption(f"Draft autosaved at {time.strftime('%H:%M:%S')}.")


def _tint(picture, mask: np.ndarray):
    """The picture with a mask blended in the pen's colour (what the reader marked already; SAFEGEN's
    own mask is a cyan outline)."""
    if not mask.any():
        return picture
    rgb = np.asarray(picture).astype(np.float32)
    pen = np.array([int(PEN_RGB[i : i + 2], 16) for i in (1, 3, 5)], np.float32)
    rgb[mask] = 0.5 * rgb[mask] + 0.5 * pen
    from PIL import Image

    return Image.fromarray(rgb.astype(np.uint8))


def _save(reader: Reader, study: StudyView, case_id: int, version: int, values: dict, *, submit: bool) -> None:
    arm = study.arm
    masks = _drawn_on(case_id, arm)
    read_key = (case_id, arm.value)
    seconds = reading_seconds(read_key)

    def store() -> None:
        with session() as s:
            save_read(s, reader, case_id, expected_version=version, answers=values, masks=masks, seconds=seconds,
                      submit=submit, arm=arm)

    try:
        retry_when_busy(store)  # a busy database (50 readers saving at once) is waited out, not reported
    except StudyError as error:
        st.error(str(error))
        return
    except OperationalError:  # SQLite still locked after its busy timeout, or the server gone: nothing stored
        st.error("The study database is busy or unreachable, so this case was not saved; your answers and mask "
                 "are still on the page. Press the button again in a moment.")
        return
    for key in [k for k in drawn_masks() if k[:2] == read_key]:
        del drawn_masks()[key]
    restart_clock(read_key)
    st.session_state[Keys.STUDY_MESSAGE] = "Saved." if not submit else "Saved; here is your next case."
    st.session_state[Keys.STUDY_NEXT_CASE] = submit  # choose_case moves on to the next unfinished case
    st.rerun()
