"""The embedded demo: real scans that install with SAFEGEN's own dependencies.

Nothing here is downloaded. Each case points at a file shipped by a pip package in
requirements.txt (nilearn, pydicom, pydicom-data) or by a Debian package that ``make setup``
installs where apt is available (mricron-data, insighttoolkit5-examples, invesalius-examples). Cases whose file is
missing on this machine are left out of :func:`available_cases`, never faked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.resources import package_file
from core.types import Modality


@dataclass(frozen=True)
class DemoCase:
    """A real scan the dashboard offers without an upload."""

    key: str
    title: str
    path: Path | None
    modality: Modality
    description: str
    provenance: str

    @property
    def available(self) -> bool:
        return self.path is not None and self.path.exists()


DEMO_CASES: tuple[DemoCase, ...] = (
    DemoCase(
        key="mni152_t1",
        title="Brain MRI T1 — MNI152 template (3-D)",
        path=package_file("nilearn.datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
        modality=Modality.MR,
        description="ICBM 2009a MNI152 T1, skull-stripped, 197x233x189 at 1 mm. An average of 152 brains: "
        "smoother than a single scan. Part of SAFEGEN's reference set of normal anatomy.",
        provenance="nilearn (pip)",
    ),
    DemoCase(
        key="colin27_t1",
        title="Brain MRI T1 — Colin27 with skull (3-D)",
        path=Path("/usr/share/mricron/templates/ch2.nii.gz"),
        modality=Modality.MR,
        description="Colin27: 27 averaged T1 scans of one adult, 181x217x181 at 1 mm, head with skull.",
        provenance="Debian mricron-data (apt)",
    ),
    DemoCase(
        key="itk_t1",
        title="Brain MRI T1 — single clinical-resolution scan (3-D)",
        path=Path("/usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz"),
        modality=Modality.MR,
        description="A real T1 head scan, 128x128x62 voxels of 2x2x3 mm, stored in LSA order (reoriented on load).",
        provenance="Debian insighttoolkit5-examples (apt)",
    ),
    DemoCase(
        key="head_ct",
        title="Head CT — InVesalius sample scan (3-D)",
        path=Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3"),
        modality=Modality.CT,
        description="A real adult head CT in HU, 256x256x108 voxels of 0.96x0.96x1.5 mm (an InVesalius 3 "
        "project). The only real head CT volume available offline: the head-CT profile's reference subject.",
        provenance="Debian invesalius-examples (apt)",
    ),
    DemoCase(
        key="head_ct_abnormal",
        title="Head CT slice — another patient, visibly abnormal (DICOM)",
        path=package_file("data_store", "data", "693_UNCR.dcm"),
        modality=Modality.CT,
        description="One 512x512 axial head CT slice (0.48 mm pixels, 5 mm thick) of a patient other than the "
        "head-CT profile's subject. Visibly abnormal: a large collection over one hemisphere and a midline shift "
        "(described by eye; the file carries no diagnosis). A real abnormality, not a generator's artifact.",
        provenance="pydicom-data (pip)",
    ),
    DemoCase(
        key="pancreas_ct",
        title="Abdominal CT slice — pancreas study (DICOM)",
        path=package_file("data_store", "data", "explicit_VR-UN.dcm"),
        modality=Modality.CT,
        description="One 512x512 abdominal CT slice (JPEG 2000 lossless), stored in HU after the rescale.",
        provenance="pydicom-data (pip)",
    ),
    DemoCase(
        key="chest_cr",
        title="Chest radiograph, PA (DICOM, MONOCHROME1)",
        path=package_file("data_store", "data", "RG1_UNCR.dcm"),
        modality=Modality.XRAY,
        description="A 1955x1841 computed radiograph stored MONOCHROME1 (inverted on load so bone is bright).",
        provenance="pydicom-data (pip)",
    ),
    DemoCase(
        key="ct_small",
        title="CT slice — pydicom test file (DICOM)",
        path=package_file("pydicom", "data", "test_files", "CT_small.dcm"),
        modality=Modality.CT,
        description="A small 128x128 CT slice from pydicom's own test files: a thoracic vertebra, 85 mm across, so the head-CT profile says it is out of its domain.",
        provenance="pydicom (pip)",
    ),
)


def available_cases() -> list[DemoCase]:
    """Demo cases whose files exist on this machine, in menu order."""
    return [c for c in DEMO_CASES if c.available]


def get_case(key: str) -> DemoCase:
    for case in DEMO_CASES:
        if case.key == key:
            return case
    raise KeyError(f"no demo case {key!r}; known: {[c.key for c in DEMO_CASES]}")
