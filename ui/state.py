"""Every session-state key in one place, so pages and tests never spell them differently."""

from __future__ import annotations


class Keys:
    """Session-state and widget keys."""

    SOURCE_KIND = "scan.source_kind"  # "Demo scan" or "Upload"
    DEMO_CASE = "scan.demo_case"  # DemoCase.key
    UPLOAD = "scan.upload"  # the st.file_uploader widget
    UPLOADED_VOLUME = "scan.uploaded_volume"  # (file id, Volume) of the last good upload
    SLICE = "scan.slice"  # display slice number, 1-based as on screen
    WINDOW = "scan.window"  # name of the chosen display window preset


SOURCE_DEMO = "Demo scan"
SOURCE_UPLOAD = "Upload"
