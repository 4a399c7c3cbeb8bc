"""SAFEGEN core: the science. Never imports streamlit or db."""
