"""DICOM-SEG export (core.dicom_seg): masks written with highdicom and read back with known answers.

A phantom volume, a real DICOM slice, a DICOM series stored out of order, a non-RAS NIfTI and a PNG
each get a SEG; read back with ``highdicom.seg.segread`` it gives exactly the mask's pixels on the
images it references, with the right segment, algorithm type, spacing and frame of reference. Then
``score --dicom-seg`` (a stand-in scorer with a known mask) and the reader-study export.
"""

import copy
import io
import shutil
import zipfile
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from core import dicom_seg
from core.io import load_volume, to_file_layout
from core.types import Modality, Volume

CT_SMALL = get_testdata_file("CT_small.dcm")
SAFEGEN = dicom_seg.safegen_author(method="safegen", profile="mri_t1", explainer="residual", tau=1.5)


def phantom() -> tuple[Volume, np.ndarray]:
    """3 slices of 32 x 40 display pixels, 0.8 x 0.9 x 2.5 mm, off the origin; a mask on slices 0 and 2."""
    array = np.random.default_rng(0).uniform(-50, 950, (40, 32, 3)).astype(np.float32)  # (X, Y, Z)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-12.0, 30.0, 7.5]
    mask = np.zeros(array.shape, np.uint8)
    mask[5:9, 3:6, 0] = 1
    mask[20:31, 10:12, 2] = 1
    return Volume(array, (0.8, 0.9, 2.5), affine, Modality.MR, "phantom.nii.gz"), mask


def read_back(seg: hd.seg.Segmentation, tmp_path: Path, name: str = "mask") -> hd.seg.Segmentation:
    path = dicom_seg.write_segmentation(seg, tmp_path / f"{name}.seg.dcm")
    return hd.seg.segread(path)


def pixels_by_image(seg: hd.seg.Segmentation, images) -> np.ndarray:
    """The SEG's segment 1 on each referenced image (empty where it stores no frame), ``(images, rows, cols)``."""
    uids = [str(ds.SOPInstanceUID) for ds in images]
    return seg.get_pixels_by_source_instance(uids, segment_numbers=[1], assert_missing_frames_are_empty=True)[..., 0]


def referenced(seg: hd.seg.Segmentation) -> list[str]:
    """The SOP Instance UIDs of the images the SEG's Referenced Series Sequence names."""
    (series,) = seg.ReferencedSeriesSequence
    return [str(item.ReferencedSOPInstanceUID) for item in series.ReferencedInstanceSequence]


def lps_of_pixel(image, row: int, column: int) -> np.ndarray:
    """Where pixel (row, column) of a single-frame image lies, LPS mm (its position, orientation and spacing)."""
    iop = np.array([float(v) for v in image.ImageOrientationPatient])
    row_mm, col_mm = (float(v) for v in image.PixelSpacing)
    return np.array([float(v) for v in image.ImagePositionPatient]) + iop[:3] * column * col_mm + iop[3:] * row * row_mm


def test_a_phantoms_mask_comes_back_frame_by_frame_on_its_derived_series(tmp_path):
    volume, mask = phantom()
    reference = dicom_seg.seg_reference(volume, None, patient_id="phantom")
    assert reference.derived and len(reference.images) == 3
    seg = read_back(dicom_seg.segmentation(reference, mask, SAFEGEN), tmp_path)
    images = [pydicom.dcmread(p) for p in dicom_seg.write_images(reference, tmp_path / "images")]

    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    assert seg.NumberOfFrames == 2  # one frame per slice that holds mask pixels
    assert np.array_equal(pixels_by_image(seg, images), volume.display_slices_of(mask))
    (segment,) = seg.SegmentSequence
    assert segment.SegmentAlgorithmType == "AUTOMATIC" and segment.SegmentAlgorithmName == "SAFEGEN"
    (algorithm,) = segment.SegmentationAlgorithmIdentificationSequence
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("SAFEGEN", "mri_t1")
    assert "tau=1.5" in algorithm.AlgorithmParameters and "explainer=residual" in algorithm.AlgorithmParameters
    category, kind = segment.SegmentedPropertyCategoryCodeSequence[0], segment.SegmentedPropertyTypeCodeSequence[0]
    assert (category.CodeValue, category.CodingSchemeDesignator) == ("49755003", "SCT")
    assert (kind.CodeValue, kind.CodingSchemeDesignator, kind.CodeMeaning) == ("111207", "DCM", "Image artifact(s)")
    # spacing, frame of reference, study and series: the derived series'
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [0.9, 0.8] and float(measures.SliceThickness) == 2.5
    assert {str(i.FrameOfReferenceUID) for i in images} == {str(seg.FrameOfReferenceUID)}
    assert {str(i.StudyInstanceUID) for i in images} == {str(seg.StudyInstanceUID)}
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == images[0].SeriesInstanceUID != seg.SeriesInstanceUID
    assert referenced(seg) == [i.SOPInstanceUID for i in images]
    sources = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
               for f in seg.PerFrameFunctionalGroupsSequence}
    assert sources == {images[0].SOPInstanceUID, images[2].SOPInstanceUID}  # each frame names its source slice
    assert seg.ContentQualification == "RESEARCH" and str(seg.PatientID) == "phantom"


def test_the_derived_series_holds_the_scan_at_the_volumes_positions(tmp_path):
    volume, _ = phantom()
    images = dicom_seg.derived_images(volume, patient_id="phantom")
    x, y, _ = volume.array.shape
    for k, image in enumerate(images):
        assert image.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
        assert list(image.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert (image.Rows, image.Columns) == (32, 40) and float(image.SliceThickness) == 2.5
        values = image.pixel_array * float(image.RescaleSlope) + float(image.RescaleIntercept)
        assert np.abs(values - volume.display_slice(k)).max() <= 1000 / 65535  # 16-bit quantisation
        for row, column in ((0, 0), (31, 39), (7, 22)):
            ras = lps_of_pixel(image, row, column) * [-1, -1, 1]
            voxel = np.array([x - 1 - column, y - 1 - row, k, 1.0])  # core.types.to_display
            assert np.allclose(ras, (volume.affine @ voxel)[:3], atol=1e-4)


def test_a_reader_mask_of_a_dicom_slice_references_that_slice(tmp_path):
    volume = load_volume(CT_SMALL)
    source = pydicom.dcmread(CT_SMALL)
    mask = np.zeros(volume.array.shape, np.uint8)
    mask[10:20, 30:45] = 1
    reference = dicom_seg.seg_reference(volume, CT_SMALL)
    assert not reference.derived and dicom_seg.image_files(reference) == {}
    seg = read_back(dicom_seg.segmentation(reference, mask, dicom_seg.reader_author("ann")), tmp_path)

    assert seg.NumberOfFrames == 1 and np.array_equal(pixels_by_image(seg, [source])[0], mask)
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert referenced(seg) == [source.SOPInstanceUID]
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID and seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.PatientID == source.PatientID
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [float(v) for v in source.PixelSpacing]
    position = seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    assert [float(v) for v in position] == [float(v) for v in source.ImagePositionPatient]
    (segment,) = seg.SegmentSequence
    assert segment.SegmentAlgorithmType == "MANUAL" and "SegmentationAlgorithmIdentificationSequence" not in segment
    assert segment.SegmentLabel == "Artifact drawn by ann" and str(seg.ContentCreatorName) == "ann^"


def marked_ct_slices() -> list[pydicom.Dataset]:
    """Three CT slices at z = 5, -5, 0 mm (an order unlike their positions), each with one marker pixel
    (raw 3000 + k at row 3 + 4k, column 7 + k; nowhere else above 999)."""
    original = pydicom.dcmread(CT_SMALL)
    rng = np.random.default_rng(1)
    slices = []
    for k, z in enumerate((5.0, -5.0, 0.0)):
        ds = copy.deepcopy(original)
        raw = rng.integers(0, 1000, (ds.Rows, ds.Columns)).astype(original.pixel_array.dtype)
        raw[3 + 4 * k, 7 + k] = 3000 + k
        ds.PixelData = raw.tobytes()
        ds.ImagePositionPatient = [*original.ImagePositionPatient[:2], z]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = k + 1
        slices.append(ds)
    return slices


def marker_mask(volume: Volume) -> np.ndarray:
    """The three markers of :func:`marked_ct_slices`, found by value in the loaded volume (HU = raw - 1024)."""
    mask = np.isin(volume.array, [3000 + k - 1024 for k in range(3)]).astype(np.uint8)
    assert mask.sum() == 3
    return mask


def test_a_series_stored_out_of_order_gets_each_mask_pixel_on_its_own_image(tmp_path):
    """The loader sorts and reorients the files; the mask of the markers must come back on exactly those pixels."""
    folder = tmp_path / "series"
    folder.mkdir()
    markers = {}
    for k, ds in enumerate(marked_ct_slices()):
        ds.save_as(folder / f"im{k}.dcm")
        markers[ds.SOPInstanceUID] = (3 + 4 * k, 7 + k)
    volume = load_volume(folder)
    mask = marker_mask(volume)
    reference = dicom_seg.seg_reference(volume, folder)
    assert not reference.derived and len(reference.images) == 3
    seg = read_back(dicom_seg.segmentation(reference, mask, SAFEGEN), tmp_path)
    frames = pixels_by_image(seg, reference.images)
    for ds, frame in zip(reference.images, frames, strict=True):
        assert np.argwhere(frame).tolist() == [list(markers[ds.SOPInstanceUID])]
    assert seg.FrameOfReferenceUID == pydicom.dcmread(CT_SMALL).FrameOfReferenceUID


def test_an_enhanced_multi_frame_ct_gets_each_mask_pixel_on_its_own_frame(tmp_path):
    """The same slices as one enhanced CT (frames stored by descending z, placed by position on load)."""
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(marked_ct_slices(), series_instance_uid=hd.UID(),
                                                        series_number=2, sop_instance_uid=hd.UID(), instance_number=1)
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path, enforce_file_format=True)
    stored = pydicom.dcmread(path)
    volume = load_volume(path)
    reference = dicom_seg.seg_reference(volume, path)
    assert not reference.derived and len(reference.images) == 1
    seg = read_back(dicom_seg.segmentation(reference, marker_mask(volume), SAFEGEN), tmp_path)
    frames = seg.get_pixels_by_source_frame(stored.SOPInstanceUID, source_frame_numbers=[1, 2, 3], segment_numbers=[1],
                                            assert_missing_frames_are_empty=True)[..., 0]
    for frame, raw in zip(frames, stored.pixel_array, strict=True):
        assert np.argwhere(frame).tolist() == np.argwhere(raw >= 3000).tolist() and frame.sum() == 1


def test_a_mask_that_does_not_fit_its_source_series_is_refused(tmp_path):
    volume = load_volume(CT_SMALL)
    reference = dicom_seg.seg_reference(volume, CT_SMALL)
    with pytest.raises(dicom_seg.DicomSegError, match="is not the scan's"):
        dicom_seg.segmentation(reference, np.zeros((4, 4), np.uint8), SAFEGEN)


def test_a_non_ras_nifti_marker_lands_where_the_nifti_affine_puts_it(tmp_path):
    """The derived series and SEG place a voxel where the NIfTI's own affine does (file stored S, P, L)."""
    data = np.random.default_rng(2).uniform(0, 100, (5, 24, 20)).astype(np.float32)  # (S, P, L) axes
    data[3, 17, 4] = 500.0
    affine = np.array([[0, 0, -0.7, 10.0], [0, -1.1, 0, 20.0], [2.0, 0, 0, -5.0], [0, 0, 0, 1.0]])
    path = tmp_path / "spl.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    assert nib.aff2axcodes(affine) == ("S", "P", "L")
    volume = load_volume(path)
    mask = (volume.array == 500.0).astype(np.uint8)
    assert np.array_equal(to_file_layout(mask, path), data == 500.0)
    assert np.array_equal(dicom_seg.from_file_layout(to_file_layout(mask, path), volume, path), mask)
    reference = dicom_seg.seg_reference(volume, path, patient_id="spl")
    seg = read_back(dicom_seg.segmentation(reference, mask, SAFEGEN), tmp_path)
    frames = pixels_by_image(seg, reference.images)
    (k, row, column), = np.argwhere(frames)
    ras = lps_of_pixel(reference.images[k], row, column) * [-1, -1, 1]
    assert np.allclose(ras, (affine @ [3, 17, 4, 1.0])[:3], atol=1e-4)


def test_a_png_gets_a_derived_image_without_a_frame_of_reference(tmp_path):
    picture = np.random.default_rng(3).integers(0, 255, (24, 30)).astype(np.uint8)
    path = tmp_path / "pic.png"
    Image.fromarray(picture).save(path)
    volume = load_volume(path)
    mask = np.zeros(picture.shape, np.uint8)
    mask[2:5, 20:26] = 1
    payload = dicom_seg.seg_zip(mask, volume, SAFEGEN, source=path, stem="pic")
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        assert sorted(archive.namelist()) == ["pic.seg.dcm", "pic_images/0001.dcm"]
        image = pydicom.dcmread(io.BytesIO(archive.read("pic_images/0001.dcm")))
        seg = hd.seg.segread(io.BytesIO(archive.read("pic.seg.dcm")))
    assert np.array_equal(image.pixel_array * float(image.RescaleSlope) + float(image.RescaleIntercept), picture)
    assert "FrameOfReferenceUID" not in image and "FrameOfReferenceUID" not in seg and not image.PatientOrientation
    assert "PixelSpacing" not in image  # the loader's 1 mm is an assumption, not the picture's
    assert referenced(seg) == [image.SOPInstanceUID]
    assert seg.StudyInstanceUID == image.StudyInstanceUID
    assert np.array_equal(pixels_by_image(seg, [image])[0], mask)


def test_the_scan_review_download_reads_an_uploads_dicom_headers_again(tmp_path):
    """The upload's temporary file is gone once it is loaded: the download writes its bytes again."""
    from ui.review import _dicom_seg_zip

    class Upload:  # what st.file_uploader returns, as far as the download needs
        name = "ct_small.dcm"

        def getvalue(self):
            return Path(CT_SMALL).read_bytes()

    volume = load_volume(CT_SMALL)
    volume.source = "ct_small.dcm"  # as core.io.load_upload leaves it
    heatmap = np.zeros(volume.array.shape, np.float32)
    heatmap[40:60, 40:70] = 5.0

    class Result:
        method, profile, explainer, tau, head = "safegen", "ct_head", "residual", 1.0, False

        def mask_at(self, tau):
            return (heatmap > tau).astype(np.uint8)

    with zipfile.ZipFile(io.BytesIO(_dicom_seg_zip(Result(), volume, 1.0, Upload(), "ct_small"))) as archive:
        assert archive.namelist() == ["ct_small.seg.dcm"]  # references the user's own DICOM file
        seg = hd.seg.segread(io.BytesIO(archive.read("ct_small.seg.dcm")))
    source = pydicom.dcmread(CT_SMALL)
    assert referenced(seg) == [source.SOPInstanceUID]
    assert np.array_equal(pixels_by_image(seg, [source])[0], heatmap > 1.0)


class KnownMaskScorer:
    """Stands in for SAFEGEN's detector in ``score``: flags every file and masks its brightest pixels
    (none for a file whose name starts with "clean")."""

    profile = None

    def score_volume(self, volume, explainer=None):
        from core.types import ScanResult

        mask = (volume.array >= np.quantile(volume.array, 0.95)).astype(np.uint8)
        if Path(volume.source).name.startswith("clean"):
            mask[:] = 0
        n = volume.n_slices
        return ScanResult(source=volume.source, score=3.0, score_diffusion=np.nan, score_autoencoder=np.nan,
                          p_value=0.01, flag=True, heatmap=mask.astype(np.float32), mask=mask,
                          slice_scores=np.full(n, 3.0), worst_slice=0, alpha=np.nan, tau=0.5, seconds={},
                          spacing=volume.spacing, head=True,
                          profile="ct_head" if volume.modality is Modality.CT else "mri_t1")


def test_score_with_dicom_seg_writes_a_seg_per_scored_file_with_a_mask(tmp_path, monkeypatch, capsys):
    import core.head_explain
    import core.head_scoring
    from workflows.cli import main

    monkeypatch.setattr(core.head_scoring, "load_detector", lambda *args, **kwargs: KnownMaskScorer())
    monkeypatch.setattr(core.head_explain, "load_explainer", lambda *args, **kwargs: None)
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(CT_SMALL, inputs / "ct.dcm")
    picture = np.random.default_rng(4).integers(0, 255, (24, 30)).astype(np.uint8)
    Image.fromarray(picture).save(inputs / "pic.png")
    Image.fromarray(picture).save(inputs / "clean.png")
    assert main(["score", str(inputs), "--out", str(out), "--dicom-seg"]) == 0
    assert "wrote 2 DICOM-SEG file(s)" in capsys.readouterr().err
    folder = out / "dicom_seg"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "ct.seg.dcm", "pic.seg.dcm", "pic_images/0001.dcm"]  # no SEG of an empty mask; the DICOM is referenced
    source = pydicom.dcmread(CT_SMALL)
    ct = hd.seg.segread(folder / "ct.seg.dcm")
    expected = np.asarray(nib.load(out / "masks" / "ct.nii.gz").dataobj).astype(bool)
    assert expected.any() and np.array_equal(pixels_by_image(ct, [source])[0], expected)
    assert ct.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    algorithm = ct.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmVersion == "ct_head" and "tau=0.5" in algorithm.AlgorithmParameters
    assert "detector=segmentation head" in algorithm.AlgorithmParameters  # the head leaves alpha empty in scores.csv
    image = pydicom.dcmread(folder / "pic_images" / "0001.dcm")
    pic = hd.seg.segread(folder / "pic.seg.dcm")
    assert np.array_equal(pixels_by_image(pic, [image])[0], np.asarray(nib.load(out / "masks" / "pic.nii.gz").dataobj))
    assert pic.ReferencedSeriesSequence[0].SeriesInstanceUID == image.SeriesInstanceUID


def test_the_study_export_has_a_seg_per_reader_mask_with_the_images_it_references(tmp_path):
    from db.models import Arm, Reader
    from db.repository import next_case, reading_list, save_read
    from db.session import session_scope
    from workflows.studies import export_study
    from tests.study_helpers import two_case_study

    study = two_case_study(tmp_path, "SEG export", (Arm.AI, Arm.AI))
    engine, factory, study_id, ids = study.engine, study.factory, study.study_id, study.ids
    cases = {name: case.scan_path for name, case in study.cases.items()}
    on_volume = np.zeros((5, 6), bool)
    on_volume[1:3, 3:5] = True
    on_ct = np.zeros((128, 128), bool)
    on_ct[50:60, 20:30] = True
    drawn = {"ann": {"case-001": {0: on_ct}, "case-002": {2: on_volume}}, "bob": {"case-002": {1: on_volume}}}
    with session_scope(factory) as s:
        for reader_id in ids[1:]:
            reader = s.get(Reader, reader_id)
            while (case := next_case(s, reader, study_id)) is not None:
                save_read(s, reader, case.id, expected_version=0, masks=drawn[reader.username].get(case.name),
                          seconds=5.0, answers={"realism": 3, "artifact_present": True, "actionable": 3,
                                   "heatmap_useful": 4})
        assert len(reading_list(s, s.get(Reader, ids[1]), study_id)) == 2
    with session_scope(factory) as s:
        paths = export_study(s, s.get(Reader, ids[0]), study_id, tmp_path / "export")
    engine.dispose()

    segs = {k: p for k, p in paths.items() if k.startswith("dicom_seg:")}
    assert set(segs) == {"dicom_seg:case-001:ann", "dicom_seg:case-002:ann", "dicom_seg:case-002:bob"}
    assert {p.name for p in segs.values()} == {"case-001_ann.seg.dcm", "case-002_ann.seg.dcm", "case-002_bob.seg.dcm"}
    images = {k: p for k, p in paths.items() if k.startswith("dicom_seg_image:")}
    assert sorted(p.relative_to(tmp_path / "export").as_posix() for p in images.values()) == [
        "dicom_seg/case-001_images/" + Path(cases["case-001"]).name,  # the de-identified DICOM the SEG references
        *(f"dicom_seg/case-002_images/{k:04d}.dcm" for k in (1, 2, 3))]  # the derived series of the NIfTI case

    # The DICOM case: its SEG references the study's de-identified copy, which the export carries.
    copy = pydicom.dcmread(images[f"dicom_seg_image:case-001:{Path(cases['case-001']).name}"])
    assert str(copy.PatientName) == "case-001" and copy.SOPInstanceUID != pydicom.dcmread(CT_SMALL).SOPInstanceUID
    ct = hd.seg.segread(segs["dicom_seg:case-001:ann"])
    assert referenced(ct) == [copy.SOPInstanceUID]
    assert str(ct.PatientName) == "case-001" and np.array_equal(pixels_by_image(ct, [copy])[0], on_ct)

    # The NIfTI case: both readers' SEGs reference one derived series; each holds that reader's mask, MANUAL.
    series = sorted((pydicom.dcmread(p) for k, p in images.items() if ":case-002:" in k),
                    key=lambda image: image.InstanceNumber)
    for reader, index in (("ann", 2), ("bob", 1)):
        seg = hd.seg.segread(segs[f"dicom_seg:case-002:{reader}"])
        expected = np.zeros((3, 5, 6), bool)
        expected[index] = on_volume
        assert np.array_equal(pixels_by_image(seg, series), expected)
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series[0].SeriesInstanceUID
        assert seg.FrameOfReferenceUID == series[0].FrameOfReferenceUID and str(seg.PatientID) == "case-002"
        (segment,) = seg.SegmentSequence
        assert segment.SegmentAlgorithmType == "MANUAL" and segment.SegmentLabel == f"Artifact drawn by {reader}"
    # the admin page zips every returned path relative to the export folder
    assert all((tmp_path / "export") in p.parents for p in paths.values())
