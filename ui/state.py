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
    PLANES = "scan.planes"  # show the coronal and sagittal views of a volume
    CORONAL = "scan.coronal"  # coronal slice number (1-based, posterior -> anterior)
    SAGITTAL = "scan.sagittal"  # sagittal slice number (1-based, patient's left -> right)
    VIEWER = "scan.viewer"  # VIEWER_SLICES or VIEWER_NIIVUE (ui.viewer)
    NIIVUE = "scan.niivue"  # prefix of the NiiVue component's key: + "." + the scan key
    NIIVUE_SCAN = "scan.niivue_scan"  # ((scan key, window), NIfTI bytes) of the scan layer shown
    NIIVUE_MAPS = "scan.niivue_maps"  # (layer key, (heatmap bytes, outline bytes)) of the overlays shown
    RESULTS = "scan.results"  # {scan key: ScanResult} of this session's upload
    TAU = "review.tau"  # the tolerance slider (calibrated z units)
    OPACITY = "review.opacity"  # heatmap opacity slider
    COLORMAP = "review.colormap"  # heatmap colour map
    SHOW_HEATMAP = "review.show_heatmap"  # overlay on/off
    SCORE_CHART = "review.score_chart"  # the per-slice score plot (its selection jumps to a slice)
    LAST_PICK = "review.last_pick"  # the chart selection already acted on
    TAU_SCAN = "review.tau_scan"  # the scan the tau slider was last reset for
    EXPLAINER = "review.explainer"  # ExplainerName value of the heatmap's explainer
    METHOD = "review.method"  # "safegen" or a baseline's --method name (core.baselines)
    PROFILE = "review.profile"  # "auto" or a profile name (core.profiles)
    BATCH_PROFILE = "batch.profile"  # a profile name (core.profiles)
    EXPLAINED = "review.explained"  # {(scan key, explainer): ScanResult} of this session's upload
    EXPLAIN_JOB = "review.explain_job"  # ui.analysis.ExplainJob: the explainer running on a volume in the background
    EXPLAIN_CANCEL = "review.explain_cancel"  # its Cancel button
    EXPLAIN_RESUME = "review.explain_resume"  # the button that explains the slices a cancelled job left
    EVAL_SOURCE = "eval.source"  # which evaluation the page shows: the full run or this session's quick one
    EVAL_QUICK_DIR = "eval.quick_dir"  # folder of this session's quick re-run
    EVAL_QUICK_FOLDER = "eval.quick_folder"  # its TemporaryDirectory (removed with the session)
    EVAL_RERUN = "eval.rerun"  # the re-run button
    STUDY_READER_ID = "study.reader_id"  # the signed-in account's id
    STUDY_LOGIN = "study.login"  # the sign-in form
    STUDY_USERNAME = "study.username"
    STUDY_PASSWORD = "study.password"
    STUDY_SIGN_OUT = "study.sign_out"
    STUDY_LAST_ACTION = "study.last_action"  # time.time() of the reader's last page run (idle timeout)
    STUDY_SIGNED_OUT = "study.signed_out"  # signed out in this browser session: ignore the session cookie
    STUDY_COOKIE_WRITTEN = "study.cookie_written"  # time.time() the session cookie was last written (0: due; None: delete)
    STUDY_SETUP_TOKEN = "study.setup_token"  # the first-admin form's one-time token
    STUDY_SIGN_IN_FAILURES = "study.sign_in_failures"  # failed sign-ins in this browser session
    STUDY_SIGN_IN_WAIT_UNTIL = "study.sign_in_wait_until"  # time.time() before which this session may not try
    STUDY_ID = "study.study_id"  # the study being read
    STUDY_CASE = "study.case_id"  # the case on screen (a selectbox)
    STUDY_NEXT_CASE = "study.next_case"  # the case to show after a save (applied before the selectbox)
    STUDY_SLICE = "study.slice"  # + ".<case id>": the slice slider (1-based)
    STUDY_WINDOW = "study.window"  # + ".<case id>": the window / level selectbox
    STUDY_VIEWER = "study.viewer"  # VIEWER_SLICES or VIEWER_NIIVUE (ui.viewer) for the reader's 3-D cases
    STUDY_NIIVUE_MAPS = "study.niivue_maps"  # ((case id, arm, tau, flags), (heatmap, outline bytes)): AI arm only
    STUDY_SHOW_AI = "study.show_ai"
    STUDY_BRUSH = "study.brush"  # canvas brush width
    STUDY_MASKS = "study.masks"  # {(case id, arm, slice): bool mask} drawn in this visit, not saved yet
    STUDY_CLEARED = "study.cleared"  # {(case id, arm, slice): clear count} slices wiped in this visit
    STUDY_OPENED = "study.opened"  # {(case id, arm): monotonic time the case was first shown}
    STUDY_SESSION = "study.session"  # the arm (session) being read in a crossed study; + ".<study id>.<current arm>"
    STUDY_ANSWER = "study.answer"  # prefix of the answer widgets: f"{STUDY_ANSWER}.{case}.{arm}.{version}.{key}"
    STUDY_FORM = "study.form"
    STUDY_AUTOSAVED = "study.autosaved"  # {(case id, arm, version): the form's state last stored as its draft}
    STUDY_DRAFT_SHOWN = "study.draft_shown"  # {((case id, arm), version)} whose restored draft was announced
    STUDY_MESSAGE = "study.message"  # a confirmation to show after the rerun that follows a save
    ADMIN_ACCOUNT_FORM = "admin.account_form"
    ADMIN_NEW_USERNAME = "admin.new_username"
    ADMIN_NEW_PASSWORD = "admin.new_password"
    ADMIN_NEW_ROLE = "admin.new_role"
    ADMIN_STUDY_FORM = "admin.study_form"
    ADMIN_TITLE = "admin.title"
    ADMIN_INSTRUCTIONS = "admin.instructions"
    ADMIN_DEMOS = "admin.demos"
    ADMIN_UPLOADS = "admin.uploads"
    ADMIN_FOLDER = "admin.folder"
    ADMIN_READERS = "admin.readers"
    ADMIN_ARMS = "admin.arms"
    ADMIN_SEED = "admin.seed"
    ADMIN_QUESTIONS = "admin.questions"
    ADMIN_SCORE = "admin.score"
    ADMIN_KIND = "admin.kind"
    ADMIN_SYNTHETIC = "admin.synthetic"  # visual Turing test: the synthetic images' demo set / folder
    ADMIN_MIN_SECONDS = "admin.min_seconds"
    ADMIN_SCALE = "admin.quality_scale"
    ADMIN_CHECKLIST = "admin.checklist"
    ADMIN_CASE_LIST = "admin.case_list"
    ADMIN_LIMIT = "admin.limit"
    ADMIN_TURING_QUALITY = "admin.turing_quality"
    ADMIN_STUDY = "admin.study"
    ADMIN_MESSAGE = "admin.message"  # "Study ... created", shown after the rerun that lists it
    ADMIN_EXPORT = "admin.export"
    ADMIN_EXPORT_ZIP = "admin.export_zip"  # (study id, zip bytes) of the last prepared export
    ADMIN_EXPORT_DOWNLOAD = "admin.export_download"
    RESULTS_STUDY = "results.study"
    RESULTS_COVARIANCE = "results.covariance"
    BATCH_SOURCE = "batch.source"  # "Upload files", "Server folder" or "Generated demo set"
    BATCH_UPLOADS = "batch.uploads"  # the multi-file uploader
    BATCH_FOLDER = "batch.folder"  # a folder on the server
    BATCH_RECURSIVE = "batch.recursive"  # include sub-folders
    BATCH_RUN = "batch.run"  # the "Score" button
    BATCH_RESULT = "batch.result"  # the last Screening of this session
    BATCH_JOB = "batch.job"  # ui.batch.BatchJob: the batch being scored in the background, or stopped
    BATCH_CANCEL = "batch.cancel"  # its Cancel button
    BATCH_MANIFEST = "batch.manifest"  # the scored folder's manifest.csv (core.generated_set), or None
    BATCH_FLAGGED_ONLY = "batch.flagged_only"  # table filter


SOURCE_DEMO = "Demo scan"
SOURCE_UPLOAD = "Upload"

BATCH_UPLOAD = "Upload files"
BATCH_FOLDER = "Server folder"
BATCH_DEMO = "Generated demo set"
