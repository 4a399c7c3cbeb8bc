"""Every query of the reader study, as plain functions of a ``Session`` (pages never write SQL).

Rules enforced here, not in the pages:

* Only admins create studies or export; a reader reads and writes only their own work.
* A save (answers + masks of one case) is one transaction. It carries the ``version`` of the case
  read it was made from; a save from a stale version (a double submit, a second tab) is refused
  with :class:`StudyError` and changes nothing. The version check is a compare-and-set on a locked
  row: the read is re-read ``SELECT ... FOR UPDATE`` (PostgreSQL: concurrent savers of one read
  queue on the row lock and each sees the previous commit; SQLite has no row locks, but every
  transaction there starts with ``BEGIN IMMEDIATE``, ``db.session``, which queues whole
  transactions). Two first visits racing to create the same read (or two accounts racing for one
  username) hit the unique constraint; the loser gets the winner's row or a clear
  :class:`StudyError`, never a raw ``IntegrityError``.
* Accounts: added by an admin (:func:`create_reader`); passwords of at least 8 characters other
  than spaces and a zxcvbn score of 2 or more;
  :func:`sign_in` locks a name (known or not) after 5 failures in a row, doubling from 30 s; the
  first admin only on an empty database (:func:`create_first_admin`).
* Bad input (an unknown case, a case outside the reader's study, a Likert value out of range, an
  unknown question, a mask of the wrong shape) raises :class:`StudyError` before anything is
  written.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn

from core.study_stats import likert_levels
from db.models import (
    Answer,
    Arm,
    Assignment,
    Case,
    CaseRead,
    Draft,
    Mask,
    Reader,
    Role,
    SignInThrottle,
    Study,
    StudyKind,
    utc_now,
)
from db.session import retry_when_busy

MAX_LIKERT_LEVELS = 10
MAX_TEXT = 5000
QUESTION_KINDS = ("likert", "yes_no", "choice", "checklist", "text")
TRUTHS = ("real", "synthetic", "artifact", "clean")
log = logging.getLogger("safegen.auth")

FREE_FAILURES = 5  # consecutive wrong passwords for one name before it is locked
LOCK_SECONDS = 30.0  # the first lock-out; each further failure doubles it
MAX_LOCK_SECONDS = 15 * 60.0
MIN_PASSWORD_SCORE = 2  # zxcvbn 0-4; 2 = "somewhat guessable" (at least 10^6 guesses), enough behind the lock-out
WRONG_SIGN_IN = "Unknown user name or wrong password."
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # safe in file names, markdown and CSV cells

_HASHER = PasswordHasher()  # argon2id, argon2-cffi's RFC 9106 low-memory defaults: 64 MiB, 3 passes, 4 lanes
# One argon2 computation at a time: its 4 lanes already use every core (0.11 s alone here; 4 at once
# take 0.43 s), so 50 readers signing in together queue for it instead of all thrashing the CPU (and
# 50 x 64 MiB of memory) while other readers' saves wait behind them.
_HASH_SLOTS = threading.BoundedSemaphore(1)

DEFAULT_QUESTIONS: list[dict] = [
    {"key": "realism", "text": "How realistic is this image?", "kind": "likert",
     "low": "clearly synthetic", "high": "indistinguishable from a real scan"},
    {"key": "artifact_present", "text": "Is there an artifact that makes the image unsafe to use?", "kind": "yes_no"},
    {"key": "heatmap_useful", "text": "How useful is the heatmap for finding the problem?", "kind": "likert",
     "low": "useless", "high": "very useful", "arm": "ai"},
    {"key": "actionable", "text": "How clinically actionable is the feedback on this image?", "kind": "likert",
     "low": "not at all", "high": "fully"},
    {"key": "comment", "text": "Comments", "kind": "text"},
]

ARTIFACT_CHECKLIST = [
    "motion", "ghosting / aliasing", "wrap-around", "intensity non-uniformity", "unrealistic texture",
    "hallucinated structure", "checkerboard", "blur", "other",
]

# MRIQC's rating widget asks for one overall grade on a 4-level scale.
QUALITY_SCALES = {
    "MRIQC 1-4": ["exclude", "poor", "acceptable", "excellent"],
    "1-5": ["very poor", "poor", "fair", "good", "excellent"],
}


def quality_questions(scale: str = "MRIQC 1-4", checklist: list[str] | None = None) -> list[dict]:
    """An MRIQC-style quality rating: overall grade on ``scale``, the artifact checklist, rater
    confidence and comments."""
    labels = QUALITY_SCALES[scale]
    return [
        {"key": "quality", "text": "Overall image quality", "kind": "likert", "levels": len(labels),
         "labels": labels, "low": labels[0], "high": labels[-1]},
        {"key": "artifacts", "text": "Artifacts seen (tick all that apply)", "kind": "checklist",
         "options": list(checklist or ARTIFACT_CHECKLIST)},
        {"key": "confidence", "text": "How confident are you in this rating?", "kind": "likert",
         "low": "guessing", "high": "certain"},
        {"key": "comment", "text": "Comments", "kind": "text"},
    ]


# A visual Turing test: "real or synthetic?" with a confidence; the ROC rating combines both.
TURING_QUESTIONS: list[dict] = [
    {"key": "origin", "text": "Is this image real or synthetic?", "kind": "choice", "options": ["real", "synthetic"]},
    {"key": "confidence", "text": "How confident are you?", "kind": "likert", "low": "guessing", "high": "certain"},
    {"key": "comment", "text": "What gave it away? (optional)", "kind": "text"},
]

# The two-arm (with / without SAFEGEN) study: a 5-level confidence that the image holds an unsafe
# artifact is the ROC rating of the MRMC analysis; the mask marks where.
TWO_ARM_QUESTIONS: list[dict] = [
    {"key": "artifact_confidence", "text": "Does this image hold an artifact that makes it unsafe to use?",
     "kind": "likert", "low": "definitely not", "high": "definitely"},
    {"key": "heatmap_useful", "text": "How useful is the heatmap for finding the problem?", "kind": "likert",
     "low": "useless", "high": "very useful", "arm": "ai"},
    {"key": "comment", "text": "Comments", "kind": "text"},
]


class StudyError(ValueError):
    """A request the study cannot accept; the message is for the person who made it."""


@dataclass(frozen=True)
class CaseSpec:
    """A case to add to a study: a (de-identified) scan file, its display geometry and what it truly is."""

    name: str
    scan_path: str
    display_shape: tuple[int, int, int]  # rows, columns, slices
    ai_heatmap_path: str | None = None
    ai_score: float | None = None
    ai_tau: float | None = None  # the tolerance, profile and slice flags the heatmap was scored with
    ai_profile: str | None = None
    ai_flags: list[bool] | None = None
    truth: str | None = None  # one of TRUTHS
    truth_mask_path: str | None = None  # .npy boolean (slices, rows, columns)


# -- accounts ------------------------------------------------------------------------------------


def check_password(password: str, username: str) -> None:
    """Refuse a password a guesser would try early: fewer than 8 characters other than spaces, or a
    zxcvbn strength score below :data:`MIN_PASSWORD_SCORE` (common words and patterns, the user
    name itself, ``password``, ``Password1``)."""
    if len(password.strip()) < 8:
        raise StudyError("a password needs at least 8 characters other than spaces")
    strength = zxcvbn(password[:128], user_inputs=[username, "safegen"])  # zxcvbn is slow on very long input
    if strength["score"] < MIN_PASSWORD_SCORE:
        hint = strength["feedback"]["warning"] or "it is a common word or pattern"
        raise StudyError(f"this password is too easy to guess ({hint.rstrip('.').lower()}): "
                         "add words or characters that do not follow a pattern")


def create_reader(session: Session, admin: Reader, username: str, password: str, role: Role = Role.READER) -> Reader:
    """A new account, made by ``admin`` (the Study admin page's Accounts tab); see :func:`create_account`."""
    require_admin(admin)
    return create_account(session, username, password, role)


def create_account(session: Session, username: str, password: str, role: Role = Role.READER) -> Reader:
    """A new account with an argon2id password hash (hashed before the transaction's first statement).

    No caller check: for the server's own shell (``python -m db.admin``), the first admin
    (:func:`create_first_admin`) and test fixtures. Pages call :func:`create_reader`.
    """
    username = username.strip()
    if not USERNAME.fullmatch(username):
        raise StudyError("a username has 1 to 64 characters: letters, digits and . _ @ - (not first)")
    check_password(password, username)
    with _HASH_SLOTS:
        password_hash = _HASHER.hash(password)  # ~0.4 s: before any query, so outside SQLite's write lock
    taken = StudyError(f"the username {username!r} is taken")
    if session.scalar(select(Reader).where(Reader.username == username)) is not None:
        raise taken
    reader = Reader(username=username, password_hash=password_hash, role=Role(role))
    try:
        with session.begin_nested():  # a concurrent sign-up may take the name between check and insert
            session.add(reader)
    except IntegrityError:
        raise taken from None
    return reader


def has_accounts(session: Session) -> bool:
    """Whether any reader or admin account exists (an empty database asks for its first admin)."""
    return bool(session.scalar(select(func.count(Reader.id))))


def account(session: Session, reader_id: int) -> Reader | None:
    """The account with this id (reader or admin), or None when there is none (a stale cookie, a
    deleted account)."""
    return session.get(Reader, reader_id)


def reader_accounts(session: Session) -> list[Reader]:
    """Every account with the reader role, by name: whom an admin can assign to a study."""
    return list(session.scalars(select(Reader).where(Reader.role == Role.READER).order_by(Reader.username)))


def study_by_id(session: Session, study_id: int) -> Study | None:
    """The study with this id, or None. Whether a reader may see it is the caller's check
    (:func:`assignments`)."""
    return session.get(Study, study_id)


def create_first_admin(session: Session, username: str, password: str) -> Reader:
    """The first account of an empty database, an admin; refused once any account exists.

    Callers prove they may do this: ``python -m db.admin create-admin`` runs on the server, and the
    Reading / Study admin pages ask for the one-time setup token the server printed to its log.
    """
    if has_accounts(session):
        raise StudyError("the database has accounts already: an admin adds new ones on the Study admin page")
    admin = create_account(session, username, password, Role.ADMIN)
    log.warning("first admin account %r created", admin.username)
    return admin


class SignInRefused(StudyError):
    """A sign-in that did not succeed: wrong name or password, or a name locked after failures."""

    def __init__(self, message: str, retry_after: float = 0.0):
        super().__init__(message)
        self.retry_after = retry_after  # seconds until the name may try again (0: at once)


def lock_seconds(failures: int) -> float:
    """How long a name is locked after ``failures`` consecutive failures: none for the first
    :data:`FREE_FAILURES`, then :data:`LOCK_SECONDS`, doubling with each failure, at most
    :data:`MAX_LOCK_SECONDS`."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(LOCK_SECONDS * 2 ** (failures - FREE_FAILURES), MAX_LOCK_SECONDS)


def sign_in(open_session: Callable[[], AbstractContextManager[Session]], username: str, password: str, *,
            now: datetime | None = None, open_read: Callable[[], AbstractContextManager[Session]] | None = None) -> int:
    """The id of the account ``username`` if ``password`` is its password; else :class:`SignInRefused`.

    Three short steps, so the ~0.5 s argon2 check never holds a write lock (SQLite takes one at the
    start of every write transaction): read the name's hash and lock-out, verify, record the outcome.
    Unknown names spend the same time and are counted and locked like real ones, so neither the
    answer, its timing nor a lock-out tells which names exist. Failures are logged (``safegen.auth``).

    Args:
        open_session: a unit of work, e.g. ``lambda: session_scope(factory)``.
        now: the clock (tests pass one).
        open_read: a read-only unit of work for the first step, e.g. ``lambda: read_scope(factory)``,
            so the look-up does not queue behind other writers (default ``open_session``).
    """
    now = now or utc_now()
    name = username.strip()[:64]

    def look_up() -> tuple[datetime | None, int | None, str | None]:
        with (open_read or open_session)() as s:
            throttle = s.get(SignInThrottle, name)
            reader = s.scalar(select(Reader).where(Reader.username == name))
            return (_aware(throttle.locked_until) if throttle is not None else None,
                    *((reader.id, reader.password_hash) if reader is not None else (None, None)))

    locked_until, reader_id, password_hash = retry_when_busy(look_up)
    if locked_until is not None and locked_until > now:
        wait = (locked_until - now).total_seconds()
        log.warning("sign-in refused for %r: locked for %.0f s more", name, wait)
        raise SignInRefused(f"Too many failed sign-ins for this name: try again in {math.ceil(wait)} s.", wait)
    with _HASH_SLOTS:
        if password_hash is None:
            _HASHER.hash(password)  # spend the same time as a real check: no user enumeration by timing
            correct = False
        else:
            try:
                correct = _HASHER.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                correct = False

    def record() -> int:
        with open_session() as s:
            if correct:
                s.execute(delete(SignInThrottle).where(SignInThrottle.username == name))
                return 0
            return _count_failure(s, name, now)

    failures = retry_when_busy(record)
    if correct:
        return reader_id
    wait = lock_seconds(failures)
    log.warning("sign-in failed for %r (%d in a row)%s", name, failures, f"; locked for {wait:.0f} s" if wait else "")
    raise SignInRefused(WRONG_SIGN_IN, wait)


def _count_failure(session: Session, name: str, now: datetime) -> int:
    """Add one failure to ``name``'s row (made on the first), lock it if due; the new count."""
    row = session.get(SignInThrottle, name, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():  # a concurrent failure may insert the row first
                row = SignInThrottle(username=name, failures=0, last_failure_at=now)
                session.add(row)
        except IntegrityError:
            row = session.get(SignInThrottle, name, with_for_update=True, populate_existing=True)
    row.failures += 1
    row.last_failure_at = now
    wait = lock_seconds(row.failures)
    row.locked_until = now + timedelta(seconds=wait) if wait else None
    return row.failures


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for ``DateTime(timezone=True)``; they were stored in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def require_admin(reader: Reader) -> None:
    if reader.role is not Role.ADMIN:
        raise StudyError("only an admin can do this")


# -- studies -------------------------------------------------------------------------------------


def validate_questions(questions: list[dict]) -> list[dict]:
    """Check a question set: unique keys, known kinds, 2 to 10 Likert levels, options for choices.

    Returns it unchanged.
    """
    keys = [q.get("key") for q in questions]
    if not questions or any(not k for k in keys) or len(set(keys)) != len(keys):
        raise StudyError("questions need unique, non-empty keys")
    for q in questions:
        if q.get("kind") not in QUESTION_KINDS:
            raise StudyError(f"question {q['key']!r}: kind must be one of {', '.join(QUESTION_KINDS)}")
        if q["kind"] == "likert" and not 2 <= likert_levels(q) <= MAX_LIKERT_LEVELS:
            raise StudyError(f"question {q['key']!r}: a Likert scale needs 2 to {MAX_LIKERT_LEVELS} levels")
        if q["kind"] == "likert" and q.get("labels") and len(q["labels"]) != likert_levels(q):
            raise StudyError(f"question {q['key']!r}: one label per level")
        options = q.get("options") or []
        if q["kind"] in ("choice", "checklist") and (len(options) < (2 if q["kind"] == "choice" else 1)
                                                     or len(set(options)) != len(options)):
            raise StudyError(f"question {q['key']!r}: a {q['kind']} needs distinct options")
    return questions


def required_questions(questions: list[dict], arm: Arm) -> list[dict]:
    """The questions a submit in ``arm`` must answer: Likert, yes/no and choice questions asked in
    that arm, unless marked ``"optional": True``. Text and checklists are optional (an empty
    checklist is an answer: nothing ticked)."""
    return [q for q in questions if q["kind"] in ("likert", "yes_no", "choice") and not q.get("optional")
            and (q.get("arm") is None or q.get("arm") == arm)]


def case_order(seed: int, reader_id: int, case_ids: list[int]) -> list[int]:
    """The reader's own order of the cases: a permutation seeded by (study seed, reader id)."""
    rng = np.random.default_rng([seed, reader_id])
    return [int(case_ids[i]) for i in rng.permutation(len(case_ids))]


def create_study(
    session: Session,
    admin: Reader,
    title: str,
    cases: list[CaseSpec],
    readers: dict[int, Arm],
    *,
    instructions: str = "",
    questions: list[dict] | None = None,
    seed: int = 0,
    kind: StudyKind = StudyKind.RATING,
    settings: dict | None = None,
) -> Study:
    """A study with its cases and the readers' assignments (arm, session, seeded case order).

    Args:
        session: an open session (the caller commits).
        admin: the creating account (must be an admin).
        title, instructions: shown to readers.
        cases: the scans, in the order they were added.
        readers: reader id -> arm. In a crossed study (``settings["crossed"]``) every reader reads
            both arms and this is the arm of their first session (alternate it to counterbalance).
        questions: the question set (default :data:`DEFAULT_QUESTIONS`).
        seed: randomisation seed of the case orders.
        kind: :class:`StudyKind` (what the results page analyses).
        settings: ``min_read_seconds`` (>= 0), ``crossed`` (bool), ``roc_question`` (a Likert key).
    """
    require_admin(admin)
    if not title.strip():
        raise StudyError("a study needs a title")
    if not cases:
        raise StudyError("a study needs at least one case")
    known = set(session.scalars(select(Reader.id).where(Reader.id.in_(list(readers)))))
    if missing := sorted(set(readers) - known):
        raise StudyError(f"unknown reader id(s): {missing}")
    questions = validate_questions(list(questions or DEFAULT_QUESTIONS))
    settings = _checked_settings(dict(settings or {}), questions)
    for spec in cases:
        if spec.truth is not None and spec.truth not in TRUTHS:
            raise StudyError(f"case {spec.name!r}: truth must be one of {', '.join(TRUTHS)}")
    study = Study(title=title.strip(), instructions=instructions, seed=int(seed), created_by=admin.id,
                  questions=questions, kind=StudyKind(kind), settings=settings)
    session.add(study)
    session.flush()
    for position, spec in enumerate(cases):
        rows, cols, slices = (int(v) for v in spec.display_shape)
        session.add(Case(study_id=study.id, position=position, name=spec.name, scan_path=spec.scan_path,
                         display_shape=[rows, cols, slices], ai_heatmap_path=spec.ai_heatmap_path,
                         ai_score=spec.ai_score, ai_tau=spec.ai_tau, ai_profile=spec.ai_profile,
                         ai_flags=spec.ai_flags, truth=spec.truth, truth_mask_path=spec.truth_mask_path))
    session.flush()
    case_ids = [c.id for c in session.scalars(select(Case).where(Case.study_id == study.id).order_by(Case.position))]
    for reader_id, first in readers.items():
        arms = [Arm(first)] + ([a for a in Arm if a is not Arm(first)] if settings.get("crossed") else [])
        for block, arm in enumerate(arms):
            # Each session gets its own order, so the second read of a case is not at the same place.
            session.add(Assignment(study_id=study.id, reader_id=reader_id, arm=arm, block=block,
                                   case_order=case_order(study.seed + 7919 * block, reader_id, case_ids)))
    session.flush()
    return study


def _checked_settings(settings: dict, questions: list[dict]) -> dict:
    unknown = set(settings) - {"min_read_seconds", "crossed", "roc_question"}
    if unknown:
        raise StudyError(f"unknown study setting(s): {sorted(unknown)}")
    seconds = settings.get("min_read_seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 3600:
        raise StudyError("the minimum reading time must be 0 to 3600 seconds")
    roc = settings.get("roc_question")
    if roc is not None and roc not in {q["key"] for q in questions if q["kind"] in ("likert", "choice")}:
        raise StudyError(f"the ROC question {roc!r} must be a Likert or choice question of the study")
    return {"min_read_seconds": float(seconds), "crossed": bool(settings.get("crossed", False)),
            **({"roc_question": roc} if roc else {})}


def assignments(session: Session, reader: Reader, study_id: int) -> list[Assignment]:
    """The reader's sessions of a study in reading order (one, or one per arm in a crossed study)."""
    found = list(session.scalars(select(Assignment).where(Assignment.study_id == study_id,
                                                          Assignment.reader_id == reader.id)
                                 .order_by(Assignment.block)))
    if not found:
        raise StudyError("you are not a reader of this study")
    return found


def assignment(session: Session, reader: Reader, study_id: int, arm: Arm | None = None) -> Assignment:
    """The reader's session in ``arm``; without an arm, the first session with cases not yet submitted
    (the last one when everything is done)."""
    return _pick(session, reader, assignments(session, reader, study_id), arm)


def _pick(session: Session, reader: Reader, sessions: list[Assignment], arm: Arm | None) -> Assignment:
    if arm is not None:
        for found in sessions:
            if found.arm is Arm(arm):
                return found
        raise StudyError(f"you do not read this study in the {Arm(arm).value} arm")
    for found in sessions:
        if _unsubmitted(session, reader, found):
            return found
    return sessions[-1]


def _unsubmitted(session: Session, reader: Reader, assigned: Assignment) -> int:
    submitted = session.scalar(select(func.count(CaseRead.id)).where(
        CaseRead.reader_id == reader.id, CaseRead.arm == assigned.arm, CaseRead.submitted_at.is_not(None),
        CaseRead.case_id.in_(assigned.case_order)))
    return len(assigned.case_order) - int(submitted or 0)


def check_session_open(session: Session, reader: Reader, study_id: int, arm: Arm | None = None) -> None:
    """Raise :class:`StudyError` (saying what is left) if the reader's session in ``arm`` is not open yet."""
    sessions = assignments(session, reader, study_id)
    _check_open(session, reader, _pick(session, reader, sessions, arm), sessions)


def _check_open(session: Session, reader: Reader, assigned: Assignment, sessions: list[Assignment]) -> None:
    """A later session opens only when every earlier one is submitted (the crossed design's blocks)."""
    for earlier in sessions:
        if earlier.block < assigned.block and (left := _unsubmitted(session, reader, earlier)):
            raise StudyError(f"finish session {earlier.block + 1} first ({left} case(s) left)")


def studies_of(session: Session, reader: Reader) -> list[Study]:
    """The studies a reader is assigned to (every study for an admin)."""
    if reader.role is Role.ADMIN:
        return list(session.scalars(select(Study).order_by(Study.id)))
    return list(session.scalars(select(Study).join(Assignment, Assignment.study_id == Study.id)
                                .where(Assignment.reader_id == reader.id).order_by(Study.id)))


def _case_for(session: Session, reader: Reader, case_id: int, arm: Arm | None) -> tuple[Case, Assignment]:
    case = session.get(Case, case_id)
    if case is None:
        raise StudyError(f"there is no case {case_id}")
    sessions = assignments(session, reader, case.study_id)
    assigned = _pick(session, reader, sessions, arm)
    _check_open(session, reader, assigned, sessions)
    return case, assigned


@dataclass(frozen=True)
class ReaderCase:
    """What a reader's page may know of a case: never its truth or ground-truth mask, and SAFEGEN's
    output (heatmap, score, tolerance, slice flags) only in the AI arm; a blinded reader gets None."""

    id: int
    name: str
    scan_path: str
    display_shape: tuple[int, int, int]
    ai_heatmap_path: str | None = None
    ai_score: float | None = None
    ai_tau: float | None = None
    ai_flags: list[bool] | None = None


def _reader_view(case: Case, arm: Arm) -> ReaderCase:
    ai = (case.ai_heatmap_path, case.ai_score, case.ai_tau, case.ai_flags) if arm is Arm.AI else (None,) * 4
    return ReaderCase(case.id, case.name, case.scan_path, tuple(case.display_shape), *ai)


def reading_list(session: Session, reader: Reader, study_id: int,
                 arm: Arm | None = None) -> list[tuple[ReaderCase, CaseRead | None]]:
    """The reader's cases of one session (default: the current one) in their own order, each with
    their read of it in that arm (None if never opened)."""
    assigned = assignment(session, reader, study_id, arm)
    order = assigned.case_order
    cases = {c.id: c for c in session.scalars(select(Case).where(Case.study_id == study_id))}
    reads = {r.case_id: r for r in session.scalars(
        select(CaseRead).where(CaseRead.reader_id == reader.id, CaseRead.arm == assigned.arm,
                               CaseRead.case_id.in_(order)))}
    return [(_reader_view(cases[i], assigned.arm), reads.get(i)) for i in order]


def reader_case(session: Session, reader: Reader, case_id: int, arm: Arm | None = None) -> ReaderCase:
    """One of the reader's cases as their page may show it (see :class:`ReaderCase`).

    Raises:
        StudyError: not the reader's case, or the session is not open yet.
    """
    case, assigned = _case_for(session, reader, case_id, arm)
    return _reader_view(case, assigned.arm)


def next_case(session: Session, reader: Reader, study_id: int, arm: Arm | None = None) -> ReaderCase | None:
    """The first case in the reader's order of the session they have not submitted yet (None when done)."""
    for case, read in reading_list(session, reader, study_id, arm):
        if read is None or read.submitted_at is None:
            return case
    return None


def open_case(session: Session, reader: Reader, case_id: int, arm: Arm | None = None) -> CaseRead:
    """The reader's read of a case in ``arm`` (default: their current session's), created on first visit.

    Raises:
        StudyError: not the reader's case, or the session is not open yet (an earlier one is unfinished).
    """
    return _read_of(session, reader, *_case_for(session, reader, case_id, arm))


def find_read(session: Session, reader: Reader, case_id: int, arm: Arm | None = None) -> CaseRead | None:
    """The reader's read of a case in ``arm`` as :func:`open_case` gives it, or None before their first
    visit: never created here, so a read-only unit of work (:func:`db.session.read_scope`) may call it.

    Raises:
        StudyError: as :func:`open_case`.
    """
    return _existing_read(session, reader, case_id, arm)[1]


def _existing_read(session: Session, reader: Reader, case_id: int, arm: Arm | None) -> tuple[Case, CaseRead | None]:
    """The case (access checked) and the reader's read of it in the arm, if there is one."""
    case, assigned = _case_for(session, reader, case_id, arm)
    return case, session.scalar(_read_query(reader, case, assigned))


def _read_query(reader: Reader, case: Case, assigned: Assignment):
    """SELECT of the reader's read of ``case`` in ``assigned``'s arm."""
    return select(CaseRead).where(CaseRead.case_id == case.id, CaseRead.reader_id == reader.id,
                                  CaseRead.arm == assigned.arm)


def _read_of(session: Session, reader: Reader, case: Case, assigned: Assignment, *,
             lock: bool = False) -> CaseRead:
    """The reader's read of ``case`` in ``assigned``'s arm, created on first visit (access already checked).

    ``lock``: read it ``FOR UPDATE`` (fresh from the database, held until the transaction ends),
    for a compare-and-set of its version.
    """
    query = _read_query(reader, case, assigned)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    read = session.scalar(query)
    if read is None:
        read = CaseRead(case_id=case.id, reader_id=reader.id, arm=assigned.arm, version=0, seconds_spent=0.0)
        try:
            with session.begin_nested():  # a concurrent first visit may insert the same read
                session.add(read)
        except IntegrityError:  # it did and committed: use that one
            read = session.scalar(query.execution_options(populate_existing=True))
    return read


def shows_ai(session: Session, reader: Reader, study_id: int, arm: Arm | None = None) -> bool:
    """Whether this reader's (current) session shows SAFEGEN's heatmaps (blinded arms never get them)."""
    return assignment(session, reader, study_id, arm).arm is Arm.AI


# -- saving --------------------------------------------------------------------------------------


def pack_mask(mask: np.ndarray) -> bytes:
    """A boolean 2-D mask, bit-packed and zlib-compressed (lossless)."""
    return zlib.compress(np.packbits(np.asarray(mask, dtype=bool), axis=None).tobytes(), 6)


def unpack_mask(data: bytes, height: int, width: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(zlib.decompress(data), dtype=np.uint8), count=height * width)
    return bits.reshape(height, width).astype(bool)


def _checked_answers(questions: list[dict], answers: dict[str, object], arm: Arm) -> dict[str, tuple]:
    by_key = {q["key"]: q for q in questions}
    checked = {}
    for key, value in answers.items():
        question = by_key.get(key)
        if question is None:
            raise StudyError(f"there is no question {key!r} in this study")
        if question.get("arm") == Arm.AI and arm is not Arm.AI:
            raise StudyError(f"question {key!r} is only asked with the AI heatmap")
        if value is None:
            continue
        if question["kind"] == "likert":
            levels = likert_levels(question)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= int(value) <= levels:
                raise StudyError(f"{key!r} must be a whole number from 1 to {levels}, got {value!r}")
            checked[key] = (int(value), None)
        elif question["kind"] == "yes_no":
            if value not in (True, False, 0, 1):
                raise StudyError(f"{key!r} must be yes or no, got {value!r}")
            checked[key] = (int(bool(value)), None)
        elif question["kind"] == "choice":
            if value not in question["options"]:
                raise StudyError(f"{key!r} must be one of {', '.join(question['options'])}, got {value!r}")
            checked[key] = (None, str(value))
        elif question["kind"] == "checklist":
            ticked = [value] if isinstance(value, str) else list(value)
            if unknown := [v for v in ticked if v not in question["options"]]:
                raise StudyError(f"{key!r}: {unknown} are not options of the checklist")
            checked[key] = (None, json.dumps([o for o in question["options"] if o in ticked]))
        else:
            text = str(value)
            if len(text) > MAX_TEXT:
                raise StudyError(f"{key!r} is longer than {MAX_TEXT} characters")
            checked[key] = (None, text)
    return checked


def save_read(
    session: Session,
    reader: Reader,
    case_id: int,
    *,
    expected_version: int,
    answers: dict[str, object],
    masks: dict[int, np.ndarray] | None = None,
    seconds: float = 0.0,
    submit: bool = True,
    arm: Arm | None = None,
) -> CaseRead:
    """Save a reader's answers and masks for one case (see the module docstring).

    Args:
        session: an open session; the caller's transaction is the save (commit after this).
        reader: who is saving (answers go to their own read only).
        case_id: the case.
        expected_version: the ``version`` of the read the form was made from.
        answers: question key -> value (Likert int, yes/no bool, text); None leaves a question blank.
        masks: display slice index -> boolean ``(rows, columns)`` mask; an all-False mask
            removes that slice's mask. Slices not given keep their stored mask.
        seconds: reading time to add to the read.
        submit: mark the case as done (False: a draft the reader returns to). A submit needs an
            answer, given now or stored before, to every :func:`required_questions` question.
        arm: the session (default: the reader's current one).

    Returns:
        The read, its ``version`` one higher.

    Raises:
        StudyError: stale version, unknown case or question, out-of-range value, wrong mask shape,
            a session not open yet, a submit before the study's minimum reading time or with a
            required question unanswered.
    """
    case, assigned = _case_for(session, reader, case_id, arm)
    study = session.get(Study, case.study_id)
    checked = _checked_answers(study.questions, answers, assigned.arm)
    rows, cols, _ = case.display_shape
    packed = _checked_masks(case, masks)
    if not np.isfinite(seconds) or seconds < 0:
        raise StudyError("reading time must be a non-negative number of seconds")
    read = _read_of(session, reader, case, assigned, lock=True)  # the newest committed version, locked
    session.expire(read, ["answers", "masks"])  # and its rows as committed, not as this session last saw them
    if read.version != expected_version:
        raise StudyError("this case was saved again since this form was opened (a second tab or a double "
                         "click?); nothing was changed. Reload the case to see the saved answers.")
    minimum = float((study.settings or {}).get("min_read_seconds", 0.0))
    if submit and read.seconds_spent + seconds < minimum:
        raise StudyError(f"this study asks for at least {minimum:.0f} s per case before an answer is submitted "
                         f"({minimum - read.seconds_spent - seconds:.0f} s to go); nothing was changed.")
    existing = {a.question: a for a in read.answers}
    if submit and (missing := [q["text"] for q in required_questions(study.questions, assigned.arm)
                               if q["key"] not in checked and q["key"] not in existing]):
        raise StudyError(f"answer every question before you submit; still open: {'; '.join(missing)}. Nothing was "
                         "changed (save a draft to keep partial answers).")
    for key, (number, text) in checked.items():
        row = existing.get(key) or Answer(read_id=read.id, question=key)
        row.value_int, row.value_text = number, text
        if key not in existing:
            read.answers.append(row)
    stored = {m.slice_index: m for m in read.masks}
    for index, data in packed.items():
        if data is None:
            if index in stored:
                read.masks.remove(stored[index])
        elif index in stored:
            stored[index].data = data
        else:
            read.masks.append(Mask(read_id=read.id, slice_index=index, height=rows, width=cols, data=data))
    read.seconds_spent = float(read.seconds_spent) + float(seconds)
    read.version += 1
    if submit:
        read.submitted_at = datetime.now(UTC)
    session.execute(delete(Draft).where(Draft.read_id == read.id))  # saved: the autosaved form is spent
    session.flush()
    return read


def _checked_masks(case: Case, masks: dict[int, np.ndarray] | None) -> dict[int, bytes | None]:
    """Display slice -> packed mask (None: an empty mask, which removes the slice's mask)."""
    rows, cols, n_slices = case.display_shape
    packed = {}
    for index, mask in (masks or {}).items():
        mask = np.asarray(mask)
        if not 0 <= int(index) < n_slices:
            raise StudyError(f"slice {index} is outside this scan's {n_slices} slice(s)")
        if mask.shape != (rows, cols):
            raise StudyError(f"a mask of slice {index} must be {rows} x {cols} pixels, got {mask.shape}")
        packed[int(index)] = pack_mask(mask) if mask.any() else None
    return packed


def save_draft(session: Session, reader: Reader, case_id: int, *, expected_version: int, answers: dict[str, object],
               masks: dict[int, np.ndarray] | None = None, arm: Arm | None = None) -> None:
    """Autosave the reader's open form of a case (answers as far as given, drawn slices) as its draft.

    Checked like :func:`save_read` (values in range, masks of the right shape) but neither required
    questions nor the minimum time apply, and the read's ``version`` does not move: a draft is not a
    save. It replaces the read's previous draft; the next save deletes it. ``expected_version`` is
    the version of the read the form was made from: a draft of a form that has been saved since (in
    another tab) is kept but never restored (:func:`load_draft`).
    """
    case, assigned = _case_for(session, reader, case_id, arm)
    study = session.get(Study, case.study_id)
    checked = _checked_answers(study.questions, answers, assigned.arm)
    packed = _checked_masks(case, masks)
    read = _read_of(session, reader, case, assigned)
    values = {key: number if text is None else text for key, (number, text) in checked.items()}
    drawn = {str(i): "" if data is None else base64.b64encode(data).decode() for i, data in packed.items()}
    draft = session.get(Draft, read.id)
    if draft is None:
        try:
            with session.begin_nested():  # another tab of the same reader may autosave the first draft too
                draft = Draft(read_id=read.id, base_version=expected_version, answers=values, masks=drawn)
                session.add(draft)
            return
        except IntegrityError:
            draft = session.get(Draft, read.id, populate_existing=True)
    draft.base_version, draft.answers, draft.masks, draft.updated_at = expected_version, values, drawn, utc_now()


def load_draft(session: Session, reader: Reader, case_id: int,
               arm: Arm | None = None) -> tuple[dict[str, object], dict[int, np.ndarray], datetime] | None:
    """The reader's autosaved form of a case: answers (as stored answers: number or text), drawn
    slices (an all-False mask for a slice cleared) and when it was saved; None if there is none, or
    if the read was saved since the draft was made."""
    case, read = _existing_read(session, reader, case_id, arm)  # never created here
    draft = None if read is None else session.get(Draft, read.id)
    if draft is None or draft.base_version != read.version:
        return None
    rows, cols, _ = case.display_shape
    masks = {int(i): (unpack_mask(base64.b64decode(data), rows, cols) if data else np.zeros((rows, cols), bool))
             for i, data in draft.masks.items()}
    return dict(draft.answers), masks, _aware(draft.updated_at)


def read_masks(read: CaseRead) -> dict[int, np.ndarray]:
    """The read's masks: display slice index -> boolean array."""
    return {m.slice_index: unpack_mask(m.data, m.height, m.width) for m in read.masks}


# -- progress and export -------------------------------------------------------------------------


def progress(session: Session, admin: Reader, study_id: int) -> dict[str, tuple[int, int]]:
    """Reader name -> (reads submitted, reads assigned), for an admin; a crossed study assigns every
    case once per arm. (A reader sees their own progress on the Reading page, from :func:`reading_list`.)"""
    require_admin(admin)
    cases = session.scalar(select(func.count(Case.id)).where(Case.study_id == study_id)) or 0
    sessions = dict(session.execute(
        select(Reader.username, func.count(Assignment.id)).join(Assignment, Assignment.reader_id == Reader.id)
        .where(Assignment.study_id == study_id).group_by(Reader.username)).all())
    done = dict(session.execute(
        select(Reader.username, func.count(CaseRead.submitted_at)).join(CaseRead, CaseRead.reader_id == Reader.id)
        .join(Case, Case.id == CaseRead.case_id).where(Case.study_id == study_id)
        .group_by(Reader.username)).all())
    return {name: (int(done.get(name, 0)), int(n) * int(cases)) for name, n in sorted(sessions.items())}


ANSWER_COLUMNS = ("case_id", "case", "truth", "reader", "arm", "session", "question", "value", "text", "seconds",
                  "submitted_at")


def answers_table(session: Session, requester: Reader, study_id: int) -> list[dict]:
    """One row per answer: case (id, name, truth), reader, arm, session (1-based), question, value
    (Likert / yes-no number), text (text, choice, checklist as JSON), seconds, submitted.

    An admin gets every reader's answers; a reader only their own, without the case truth.
    """
    query = (
        select(Case.id, Case.name, Case.truth, Reader.username, CaseRead.arm, Assignment.block, Answer.question,
               Answer.value_int, Answer.value_text, CaseRead.seconds_spent, CaseRead.submitted_at)
        .join(CaseRead, CaseRead.id == Answer.read_id)
        .join(Case, Case.id == CaseRead.case_id)
        .join(Reader, Reader.id == CaseRead.reader_id)
        .join(Assignment, (Assignment.reader_id == Reader.id) & (Assignment.study_id == Case.study_id)
              & (Assignment.arm == CaseRead.arm))
        .where(Case.study_id == study_id)
        .order_by(Case.id, Reader.username, Assignment.block, Answer.question)
    )
    admin = requester.role is Role.ADMIN
    if not admin:
        assignments(session, requester, study_id)
        query = query.where(Reader.id == requester.id)
    return [dict(zip(ANSWER_COLUMNS, (row[0], row[1], row[2] if admin else None, row[3], str(row[4]), row[5] + 1,
                                      *row[6:10], row[10].isoformat() if row[10] else None), strict=True))
            for row in session.execute(query)]


def study_masks(session: Session, admin: Reader, study_id: int, *,
                include_empty: bool = False) -> list[tuple[Case, str, str, dict[int, np.ndarray]]]:
    """Every drawn mask of a study (admin only): (case, reader name, arm, slice -> mask).

    ``include_empty``: also the submitted reads without a mask (a reader who saw no artifact), as
    an empty dict, for agreement statistics.
    """
    require_admin(admin)
    out = []
    for read, case, name in session.execute(
            select(CaseRead, Case, Reader.username).join(Case, Case.id == CaseRead.case_id)
            .join(Reader, Reader.id == CaseRead.reader_id).where(Case.study_id == study_id)
            .order_by(Case.id, Reader.username, CaseRead.arm)):
        masks = read_masks(read)
        if masks or (include_empty and read.submitted_at is not None):
            out.append((case, name, read.arm.value, masks))
    return out
