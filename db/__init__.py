"""Persistence for the reader study: SQLAlchemy 2.0 engine, sessions and (later) models.

``base.py`` holds the declarative ``Base``; ``session.py`` builds engines and sessions from a URL.
Nothing here imports Streamlit: the UI caches what this package builds, never the other way round.
Import from the submodules (``from db.session import make_engine``); this package re-exports
nothing, so importing ``db`` stays free of side effects.
"""
