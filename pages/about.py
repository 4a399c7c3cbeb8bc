"""About SAFEGEN: intended use, the real data behind it, and its limits."""

import streamlit as st

from ui.about import calibration_facts, data_sources_table, models_table, versions_table
from ui.router import through_the_router
from ui.tables import show_table

through_the_router()  # before anything is drawn: a page run alone reruns through app.py
st.title("About SAFEGEN")
st.markdown(
    """
SAFEGEN checks **synthetic** medical images (from diffusion models, GANs) for artifacts that make
them unsafe to use: hallucinated lesions, smeared regions, checkerboard textures, duplicated
anatomy. Its detectors learn only from **real** images of normal anatomy.

**Intended use:** research — screening generated images before they are used for training,
augmentation or simulation, and reader studies with radiologists. Not for diagnosis.
"""
)
st.subheader("Real data of normal anatomy on this machine")
st.markdown(
    "Only **a few real subjects** can be installed offline, and both brain references are averages "
    "of several scans (smoother than one clinical scan). Normal variation is simulated with "
    "augmentation (rotation, scale, translation, gamma, bias field, Rician noise)."
)
show_table(data_sources_table(), hide_index=True)
st.subheader("Model card")
st.markdown(
    "Each profile's two detectors were trained on CPU, on real normal slices of its modality only (brain MRI "
    "T1: two subjects; head CT: one), and are committed with a JSON record of their training. `make models` "
    "and `make models-ct` retrain and recalibrate them (seeded, about 40 and 25 min)."
)
show_table(models_table(), hide_index=True)
for name, value in calibration_facts().items():
    st.markdown(f"- **{name}**: {value}")
st.markdown(
    """
**Limits, measured** (README, `make evaluate`): brain MRI T1 is scored by a segmentation head (issue 21,
open). On a realistic benchmark (real slices under normal variation, half with one artifact, a held-out
real scan) it ranks a corrupted slice above a clean one 69 % of the time (image AUROC 0.69; the seed's
reconstruction score: 0.53), flags 6.5 % of the held-out scan's clean slices at the configured 5 %, and
its τ masks outline artifacts poorly (Dice 0.04). Checkerboards, noise patches and blur are found best;
duplication and ringing are missed. The head-CT profile, learned from one real scan,
reaches image AUROC 0.60 on its own benchmark and did not flag a visibly abnormal head CT of another
patient. **Radiographs have no profile**: one real chest radiograph installs offline, too few to learn
normal radiographs from, so they lie outside every shipped model's domain. A group with its own normal
images (radiographs included: MONOCHROME1 is inverted on load) trains a profile on them with
`python -m workflows.cli train-profile NAME --images FOLDER`; it then appears in the Profile choices.
The generated demo set on **Batch screening** comes from a DDPM and a VAE trained here on the same two
brains (README, Screening a real generator's images). The **Evaluation** page shows the full figures.
"""
)
st.subheader("Software versions")
show_table(versions_table(), hide_index=True)
