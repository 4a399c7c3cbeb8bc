"""Command workflows above ``core`` and ``db``: what the command line (``python -m workflows.cli``) and
the dashboard run end to end: score a folder, screen a batch, compare methods, time scoring, train a
user's profile, fit the appearance check, run a reader study. Never imports Streamlit or ``ui``."""
