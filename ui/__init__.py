"""Shared Streamlit code: session-state keys, cached resources and widgets. Pages stay thin."""
