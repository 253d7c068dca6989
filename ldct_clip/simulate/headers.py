"""DICOM headers for a volume that has none (e.g. read from NIfTI), so it can be written as a CT series."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from ldct_clip.io import CTVolume

__all__ = ["ct_headers_for_volume"]


def ct_headers_for_volume(volume: CTVolume, patient_id: str, series_description: str = "") -> list[Dataset]:
    """Minimal CT Image Storage headers (one per slice, no pixel data) describing ``volume``'s geometry.

    For writing a volume that did not come from DICOM (e.g. NIfTI) with
    :func:`~ldct_clip.io.write_dicom_series`. Slice ``z`` sits at origin + z · spacing_z · normal, with
    ImageOrientationPatient from the volume's direction rows, PixelSpacing (row, column) = (spacing_y,
    spacing_x) and SliceThickness spacing_z. Pixels are signed 16 bit with RescaleSlope 1 and
    RescaleIntercept −1024 (HU range −33792 to 31743, in steps of 1 HU). All slices share one new
    StudyInstanceUID and FrameOfReferenceUID; the Type 2 tags of the patient, study, series, equipment and
    CT image modules are present (empty where unknown); SOP Instance and Series UIDs are left to the writer.

    >>> v = CTVolume(np.zeros((2, 4, 4), np.float32), (2.0, 0.5, 0.5), (0, 0, 10), np.eye(3), None, "x.nii")
    >>> [h.ImagePositionPatient for h in ct_headers_for_volume(v, "SIM001")]
    [[0.0, 0.0, 10.0], [0.0, 0.0, 12.0]]
    """
    spacing_z, spacing_y, spacing_x = volume.spacing
    rows, columns = volume.shape[1:]
    study, frame = generate_uid(), generate_uid()
    headers = []
    for z in range(volume.shape[0]):
        position = np.asarray(volume.origin) + z * spacing_z * volume.direction[2]
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientName = patient_id
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyInstanceUID = study
        ds.StudyDate = ""
        ds.StudyTime = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = ""
        ds.AccessionNumber = ""
        ds.SeriesNumber = 1
        ds.SeriesDescription = series_description
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = ""
        ds.InstanceNumber = z + 1
        ds.AcquisitionNumber = 1
        ds.KVP = ""
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.ImageOrientationPatient = [round(float(v), 8) for v in (*volume.direction[0], *volume.direction[1])]
        ds.PixelSpacing = [spacing_y, spacing_x]
        ds.SliceThickness = spacing_z
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024
        ds.RescaleType = "HU"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        headers.append(ds)
    return headers
