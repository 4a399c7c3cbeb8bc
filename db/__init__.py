"""Persistence for the reader study, and nothing else: SQLAlchemy 2.0 engine, sessions, models, migrations
and the repository (every query). The study workflow that scores and exports is :mod:`workflows.studies`.

``base.py`` holds the declarative ``Base``; ``session.py`` builds engines and sessions from a URL.
Nothing here imports Streamlit: the UI caches what this package builds, never the other way round.
Import from the submodules (``from db.session import make_engine``); this package re-exports
nothing, so importing ``db`` stays free of side effects.
"""
