"""Server time of dashboard interactions, measured with Streamlit's AppTest (no browser, no network).

    .venv/bin/python scripts/bench_dashboard.py [--repeats N]      (part of `make bench`)

On the default demo (the MNI152 template, 189 slices): the first visit (models load and score the
volume), then the median rerun time of a slice-slider move, a tau-slider move, and a switch of the
heatmap explainer (first time: the page comes back while the explainer runs in the background, then
how long until it is done; second time: cached). A rerun is what the server
does between a reader's action and the new page; the browser's drawing time is not included.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from ui.state import Keys  # noqa: E402


def timed_run(at: AppTest) -> float:
    start = time.perf_counter()
    at.run(timeout=600)
    seconds = time.perf_counter() - start
    if at.exception:
        raise SystemExit(f"the app raised: {[e.value for e in at.exception]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    rows = [("first visit: load models, score 189-slice MNI152", f"{timed_run(at):.1f} s")]
    slice_times, tau_times = [], []
    for i in range(args.repeats):
        at.slider(key=Keys.SLICE).set_value(60 + 10 * i)
        slice_times.append(timed_run(at))
        at.slider(key=Keys.TAU).set_value(3.0 + 0.25 * i)
        tau_times.append(timed_run(at))
    rows.append((f"slice-slider move, median of {args.repeats}", f"{statistics.median(slice_times) * 1e3:.0f} ms"))
    rows.append((f"tau-slider move, median of {args.repeats}", f"{statistics.median(tau_times) * 1e3:.0f} ms"))
    at.selectbox(key=Keys.EXPLAINER).set_value("saliency")
    rows.append(("switch to the saliency explainer: the page is back (it runs behind)", f"{timed_run(at):.2f} s"))
    start = time.perf_counter()
    while at.get("progress"):  # the background run's progress bar, redrawn as the page would
        time.sleep(0.5)
        timed_run(at)
    rows.append(("... until its 120 slices are explained", f"{time.perf_counter() - start:.1f} s"))
    at.selectbox(key=Keys.EXPLAINER).set_value("residual")
    timed_run(at)
    at.selectbox(key=Keys.EXPLAINER).set_value("saliency")
    rows.append(("switch back to saliency (cached)", f"{timed_run(at) * 1e3:.0f} ms"))
    width = max(len(what) for what, _ in rows)
    for what, figure in rows:
        print(f"{what:<{width}}  {figure}")


if __name__ == "__main__":
    main()
