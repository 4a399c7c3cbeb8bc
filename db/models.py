"""The reader-study schema: readers, studies, cases, each reader's case order, answers and masks.

One study is read by several readers. Each reader has one :class:`Assignment` per **arm** they
read (AI heatmaps shown or not): one arm in a between-reader study, both arms in a crossed study
(one session per arm, in a counterbalanced order), each with its own seeded random order of the
study's cases. A reader's work on one case in one arm is a :class:`CaseRead` (when it was opened and submitted, seconds spent, a ``version`` that guards
against double submits), holding that reader's :class:`Answer` rows (one per question) and
:class:`Mask` rows (one per drawn slice, bit-packed and zlib-compressed: lossless, about 2 KB for a
512x512 slice).

Alembic owns the schema (``db/migrations``); ``tests/test_db_models.py`` migrates an empty
database to head and checks that it matches these models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base


def utc_now() -> datetime:
    return datetime.now(UTC)


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


class Role(StrEnum):
    ADMIN = "admin"
    READER = "reader"


class Arm(StrEnum):
    """What a reader sees: the image only, or the image with SAFEGEN's heatmap."""

    UNAIDED = "unaided"
    AI = "ai"


class StudyKind(StrEnum):
    """What a study asks: ratings and masks, "real or synthetic?", or the same cases with and without AI."""

    RATING = "rating"
    VISUAL_TURING = "visual_turing"
    TWO_ARM = "two_arm"


class Reader(Base):
    """An account. ``password_hash`` is an argon2id hash (``argon2-cffi``), never the password."""

    __tablename__ = "reader"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16, values_callable=_values))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class SignInThrottle(Base):
    """Failed sign-ins per user name (known or not, so a lock-out does not reveal which names exist).

    ``failures`` counts consecutive failures; after :data:`db.repository.FREE_FAILURES` of them the
    name is locked until ``locked_until`` (a back-off that doubles with each further failure). A
    successful sign-in deletes the row.
    """

    __tablename__ = "sign_in_throttle"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Study(Base):
    """A reader study: instructions, the questions asked of every case, and its randomisation seed.

    ``questions``: a JSON list of ``{"key", "text", "kind", ...}`` (see
    :func:`db.repository.validate_questions`): ``likert`` (``levels``, default 5, and ``low`` /
    ``high`` labels of the ends), ``yes_no``, ``choice`` (one of ``options``), ``checklist`` (any of
    ``options``) and ``text``; ``"arm": "ai"`` asks a question only when the heatmap is shown.

    ``kind``: :class:`StudyKind`. ``settings``: ``min_read_seconds`` (a case cannot be submitted
    sooner), ``crossed`` (every reader reads every case once per arm, one arm per session) and
    ``roc_question`` (the confidence question the MRMC ROC analysis uses).
    """

    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    instructions: Mapped[str] = mapped_column(Text, default="")
    questions: Mapped[list] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[StudyKind] = mapped_column(
        Enum(StudyKind, native_enum=False, length=32, values_callable=_values), default=StudyKind.RATING,
        server_default=StudyKind.RATING.value)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_by: Mapped[int] = mapped_column(ForeignKey("reader.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    cases: Mapped[list[Case]] = relationship(back_populates="study", order_by="Case.position")


class Case(Base):
    """One scan of a study, stored as a de-identified file under the study's folder.

    ``display_shape`` is ``[rows, columns, slices]`` of the scan's display slices (a drawn mask
    must match it); ``ai_heatmap_path`` is SAFEGEN's heatmap (a ``.npy`` of the scan's array
    shape), shown only to readers in the AI arm, with the tolerance ``ai_tau``, profile ``ai_profile``
    and per-display-slice flags ``ai_flags`` it was scored with (its mask is
    :func:`core.masks.unsafe_mask` of the heatmap at that tau on those slices). ``truth`` is what the case is known to be
    (``"real"`` / ``"synthetic"`` in a visual Turing test, ``"artifact"`` / ``"clean"`` otherwise),
    never shown to readers; ``truth_mask_path`` a ``.npy`` boolean ``(slices, rows, columns)`` stack
    of the display slices (e.g. the artifact simulator's mask) that readers' masks are scored against.
    """

    __tablename__ = "study_case"
    __table_args__ = (UniqueConstraint("study_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # order of creation within the study
    name: Mapped[str] = mapped_column(String(255))
    scan_path: Mapped[str] = mapped_column(String(1024))
    display_shape: Mapped[list] = mapped_column(JSON)
    ai_heatmap_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    ai_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    ai_tau: Mapped[float | None] = mapped_column(Float, nullable=True)
    ai_profile: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ai_flags: Mapped[list | None] = mapped_column(JSON, nullable=True)
    truth: Mapped[str | None] = mapped_column(String(16), nullable=True)
    truth_mask_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)

    study: Mapped[Study] = relationship(back_populates="cases")


class Assignment(Base):
    """A reader's session of a study: the arm, its place among the reader's sessions (``block``) and the
    reader's own seeded order of the study's case ids. A crossed study gives each reader one
    assignment per arm; a reader opens block 1 only when block 0 is submitted."""

    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("study_id", "reader_id", "arm"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id"))
    arm: Mapped[Arm] = mapped_column(Enum(Arm, native_enum=False, length=16, values_callable=_values))
    case_order: Mapped[list] = mapped_column(JSON)
    block: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CaseRead(Base):
    """One reader's work on one case in one arm; ``version`` grows with every save (a stale save is refused)."""

    __tablename__ = "case_read"
    __table_args__ = (
        UniqueConstraint("case_id", "reader_id", "arm"),
        CheckConstraint("seconds_spent >= 0", name="seconds_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("study_case.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id"))
    arm: Mapped[Arm] = mapped_column(Enum(Arm, native_enum=False, length=16, values_callable=_values))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    seconds_spent: Mapped[float] = mapped_column(Float, default=0.0)
    version: Mapped[int] = mapped_column(Integer, default=0)

    answers: Mapped[list[Answer]] = relationship(back_populates="read", cascade="all, delete-orphan")
    masks: Mapped[list[Mask]] = relationship(back_populates="read", cascade="all, delete-orphan")


class Answer(Base):
    """One answer to one question: ``value_int`` for Likert (1 to levels) and yes/no (1/0),
    ``value_text`` for text and choice, a JSON list of the ticked options for a checklist."""

    __tablename__ = "answer"
    __table_args__ = (UniqueConstraint("read_id", "question"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    read_id: Mapped[int] = mapped_column(ForeignKey("case_read.id", ondelete="CASCADE"))
    question: Mapped[str] = mapped_column(String(64))
    value_int: Mapped[int | None] = mapped_column(Integer, nullable=True)
    value_text: Mapped[str | None] = mapped_column(Text, nullable=True)

    read: Mapped[CaseRead] = relationship(back_populates="answers")


class Mask(Base):
    """A mask drawn on one display slice: ``np.packbits`` of the boolean array, zlib-compressed."""

    __tablename__ = "mask"
    __table_args__ = (UniqueConstraint("read_id", "slice_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    read_id: Mapped[int] = mapped_column(ForeignKey("case_read.id", ondelete="CASCADE"))
    slice_index: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)

    read: Mapped[CaseRead] = relationship(back_populates="masks")


class Draft(Base):
    """The open form of one read, autosaved as the reader works: answers (as :class:`Answer` stores
    them: the number, or the text) and drawn slices (slice index -> base64 of the packed mask, ``""``
    for a slice cleared). Restored after a reload or on the next sign-in; the next save of the read
    deletes it. ``base_version`` is the read's version it was made on: a draft older than the read
    (saved since, in another tab) is ignored."""

    __tablename__ = "draft"

    read_id: Mapped[int] = mapped_column(ForeignKey("case_read.id", ondelete="CASCADE"), primary_key=True)
    base_version: Mapped[int] = mapped_column(Integer)
    answers: Mapped[dict] = mapped_column(JSON)
    masks: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
