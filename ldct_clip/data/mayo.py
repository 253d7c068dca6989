"""Discover AAPM-Mayo 2016 slices, pair quarter/full-dose slices by position, and keep them in a manifest.

Folder-name rules (directories below the root only; file names are ignored because downloads rename
them). Each directory name is split into tokens at anything but letters, digits and dots; the deepest
directory holding a token decides:

- patient: a token ``L`` + three digits (``L067``); fallback: the DICOM PatientID;
- dose: ``full``/``fd``/``fulldose`` -> ``full``, ``quarter``/``qd``/``quarterdose`` -> ``quarter``;
  files in folders without a dose token are not read;
- slice thickness: ``<number>mm`` (``1mm``, ``3mm``); fallback: the DICOM SliceThickness;
- reconstruction kernel: a Siemens kernel code such as ``B30``, ``D45`` or ``B30f`` beside a dose or
  thickness token in the same directory name (``1mm B30``), so that patient folders such as ``P01`` are
  not taken for kernels; fallback: none.

So ``<root>/L067/full_1mm/*.IMA``, ``<root>/L067/1mm B30/QD_1mm/*.IMA`` and
``<root>/quarter/3mm/L096/*.dcm`` are all understood.

Pairing: within one (patient, thickness, kernel) group, quarter- and full-dose slices are matched by
their position along the slice normal, never by file order, with a tolerance of
:data:`PAIR_TOLERANCE_FRACTION` x slice thickness. Unmatched slices stay in the manifest with an empty
pair key and are counted in :meth:`Manifest.pairing_summary`.

The scan only reads: the manifest is written elsewhere (:meth:`Manifest.save` refuses paths inside
the data root).
"""

from __future__ import annotations

import csv
import logging
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

from ldct_clip.errors import InputError
from ldct_clip.io.dicom import SliceInfo, read_slice_header

logger = logging.getLogger(__name__)

DOSES: tuple[str, ...] = ("full", "quarter")
"""Dose labels of the manifest."""
DOSE_TOKENS: dict[str, str] = {
    "full": "full",
    "fd": "full",
    "fulldose": "full",
    "quarter": "quarter",
    "qd": "quarter",
    "quarterdose": "quarter",
}
"""Folder-name tokens (lower case) -> dose label."""
PATIENT_PATTERN = re.compile(r"L\d{3}")
"""Folder-name token of an AAPM-Mayo patient ID."""
THICKNESS_PATTERN = re.compile(r"(\d+(?:\.\d+)?)mm", re.IGNORECASE)
"""Folder-name token of a slice thickness in mm."""
KERNEL_PATTERN = re.compile(r"[A-Za-z]\d{2}[a-z]?")
"""Folder-name token of a Siemens reconstruction kernel (B30, D45, B30f)."""
PAIR_TOLERANCE_FRACTION = 0.1
"""Two slices pair when their positions along the normal differ by at most this x slice thickness."""
DEFAULT_WORKERS = 8
"""Threads reading DICOM headers: header reads wait on the disk, not the CPU."""
ACCEPTED_MODALITIES: tuple[str, ...] = ("CT", "")
"""DICOM Modality values of usable slices (empty: tag missing, as in some anonymised exports)."""
MANIFEST_MAGIC = "# ldct_clip manifest v1; root="
"""First line of a manifest CSV, followed by the absolute data root."""
MANIFEST_CACHE = "manifest.csv"
"""File name of a scanned manifest kept beside outputs (a run or report folder) and reused by :func:`load_manifest`."""

_TOKEN_SPLIT = re.compile(r"[^A-Za-z0-9.]+")


@dataclass(frozen=True)
class ManifestRow:
    """One slice: who, which dose, where along the normal, and its quarter/full pair key.

    ``path`` is relative to the manifest root, with ``/`` separators; ``pair`` is shared by the
    quarter- and full-dose slice of a pair and empty for an unpaired slice.
    """

    patient: str
    dose: str
    thickness_mm: float
    kernel: str
    z: float
    pair: str
    rows: int
    columns: int
    path: str


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ManifestRow))
"""CSV columns of a manifest, in order."""


@dataclass(frozen=True)
class PairingSummary:
    """Slice counts of one (patient, thickness, kernel) group after pairing."""

    patient: str
    thickness_mm: float
    kernel: str
    paired: int
    quarter_unpaired: int
    full_unpaired: int

    @property
    def label(self) -> str:
        """``L067 1 mm B30`` style label of the group."""
        return " ".join(part for part in (self.patient, f"{self.thickness_mm:g} mm", self.kernel) if part)


@dataclass(frozen=True)
class Manifest:
    """Table of discovered slices with the data root their paths are relative to.

    ``skipped`` lists files under dose folders that could not be used (not a CT DICOM slice, no
    position), each as ``"relative/path: reason"``; it is not saved to CSV.

    >>> m = Manifest(Path("/data"), (ManifestRow("L067", "full", 1.0, "", 0.0, "", 512, 512, "a.IMA"),))
    >>> m.patients, m.pairing_summary()[0].full_unpaired
    (('L067',), 1)
    """

    root: Path
    rows: tuple[ManifestRow, ...]
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "skipped", tuple(self.skipped))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def patients(self) -> tuple[str, ...]:
        """Patient IDs present, sorted."""
        return tuple(sorted({row.patient for row in self.rows}))

    def absolute(self, row: ManifestRow) -> Path:
        """Absolute path of a row's file."""
        return self.root / row.path

    def select(
        self,
        patients: Iterable[str] | None = None,
        dose: str | None = None,
        thickness_mm: float | None = None,
        kernel: str | None = None,
    ) -> tuple[ManifestRow, ...]:
        """Rows matching every given filter (``None`` = any), in manifest order."""
        if dose is not None and dose not in DOSES:
            raise InputError(f"dose={dose!r}: unknown dose; use one of {', '.join(DOSES)}")
        wanted = None if patients is None else set(patients)
        return tuple(
            row
            for row in self.rows
            if (wanted is None or row.patient in wanted)
            and (dose is None or row.dose == dose)
            and (thickness_mm is None or _same_thickness(row.thickness_mm, thickness_mm))
            and (kernel is None or row.kernel == kernel)
        )

    def pairs(
        self,
        patients: Iterable[str] | None = None,
        thickness_mm: float | None = None,
        kernel: str | None = None,
    ) -> list[tuple[ManifestRow, ManifestRow]]:
        """(quarter, full) row pairs, sorted by patient, thickness, kernel and position."""
        by_key: dict[str, dict[str, ManifestRow]] = defaultdict(dict)
        for row in self.select(patients, None, thickness_mm, kernel):
            if row.pair:
                by_key[row.pair][row.dose] = row
        pairs = [(rows["quarter"], rows["full"]) for rows in by_key.values() if len(rows) == len(DOSES)]
        return sorted(pairs, key=lambda p: (p[1].patient, p[1].thickness_mm, p[1].kernel, p[1].z))

    def pairing_summary(self) -> tuple[PairingSummary, ...]:
        """Paired and unpaired slice counts per (patient, thickness, kernel) group."""
        counts: dict[tuple[str, float, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in self.rows:
            group = counts[(row.patient, row.thickness_mm, row.kernel)]
            group[row.dose if not row.pair else "paired"] += 1
        return tuple(
            PairingSummary(patient, thickness, kernel, c["paired"] // len(DOSES), c["quarter"], c["full"])
            for (patient, thickness, kernel), c in sorted(counts.items())
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the manifest as CSV (atomically: a temporary file renamed into place); return the path.

        Refuses a path inside the data root: the data folder is never written to.
        """
        target = ensure_outside_root(path, self.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
                handle.write(f"{MANIFEST_MAGIC}{self.root.resolve()}\n")
                writer = csv.writer(handle)
                writer.writerow(COLUMNS)
                for row in self.rows:
                    writer.writerow([getattr(row, column) for column in COLUMNS])
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Manifest:
        """Read a manifest written by :meth:`save`; ``root`` overrides the recorded root (moved data)."""
        source = Path(path)
        try:
            with source.open(newline="", encoding="utf-8") as handle:
                first = handle.readline().rstrip("\r\n")
                if not first.startswith(MANIFEST_MAGIC):
                    raise InputError(
                        f"{source}: not an ldct_clip manifest (first line should start with {MANIFEST_MAGIC!r}); "
                        "create one with pipelines/prepare_mayo.py"
                    )
                reader = csv.DictReader(handle)
                if tuple(reader.fieldnames or ()) != COLUMNS:
                    raise InputError(
                        f"{source}: manifest columns {reader.fieldnames} differ from {list(COLUMNS)}; "
                        "recreate it with pipelines/prepare_mayo.py"
                    )
                rows = tuple(_parse_row(record, source, reader.line_num + 1) for record in reader)  # + magic line
        except FileNotFoundError:
            raise InputError(f"{source}: manifest not found; create it with pipelines/prepare_mayo.py") from None
        except UnicodeDecodeError:
            raise InputError(f"{source}: not a text CSV manifest; pass the file prepare_mayo.py wrote") from None
        data_root = Path(root) if root is not None else Path(first[len(MANIFEST_MAGIC) :])
        return cls(root=data_root, rows=rows)


def load_manifest(
    root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, write_cache: bool = False
) -> Manifest:
    """A manifest CSV as given, or an AAPM-Mayo tree scanned with :func:`scan_mayo`.

    For a tree, ``cache_dir/manifest.csv`` (:data:`MANIFEST_CACHE`) is reused when it was made from the same
    root; otherwise the tree is scanned and, with ``write_cache``, the result saved there (never inside the
    data root: :meth:`Manifest.save` refuses that). Training caches in its run folder; evaluation only reads
    the cache, because its report folder appears atomically with the manifest inside.

    >>> load_manifest("/no/such/folder")
    Traceback (most recent call last):
    ldct_clip.errors.InputError: /no/such/folder: data root not found; pass an AAPM-Mayo folder or a manifest \
from prepare_mayo.py
    """
    source = Path(root)
    if source.is_file():
        return Manifest.load(source)
    if not source.is_dir():
        raise InputError(f"{source}: data root not found; pass an AAPM-Mayo folder or a manifest from prepare_mayo.py")
    cached = None if cache_dir is None else Path(cache_dir) / MANIFEST_CACHE
    if cached is not None and cached.is_file():
        manifest = Manifest.load(cached)
        if manifest.root.resolve() == source.resolve():
            logger.info("reusing the manifest cached in %s", cached)
            return manifest
    logger.info("scanning %s for AAPM-Mayo series", source)
    manifest = scan_mayo(source)
    if write_cache and cached is not None:
        manifest.save(cached)
        logger.info("manifest cached as %s", cached)
    return manifest


def ensure_outside_root(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """Resolved ``path``; InputError when it lies inside the data ``root`` (the data is never written to).

    >>> ensure_outside_root("/tmp/manifest.csv", "/data/mayo")
    PosixPath('/tmp/manifest.csv')
    """
    target = Path(path).expanduser().resolve()
    data_root = Path(root).expanduser().resolve()
    if target.is_relative_to(data_root):
        raise InputError(f"{path}: inside the data root {data_root}; write the manifest outside the data folder")
    return target


def _parse_row(record: dict[str, str], source: Path, line: int) -> ManifestRow:
    try:
        row = ManifestRow(
            patient=record["patient"],
            dose=record["dose"],
            thickness_mm=float(record["thickness_mm"]),
            kernel=record["kernel"],
            z=float(record["z"]),
            pair=record["pair"],
            rows=int(record["rows"]),
            columns=int(record["columns"]),
            path=record["path"],
        )
    except (TypeError, ValueError):
        raise InputError(f"{source}, line {line}: malformed manifest row; recreate it with prepare_mayo.py") from None
    if row.dose not in DOSES:
        raise InputError(f"{source}, line {line}: dose {row.dose!r} is not one of {', '.join(DOSES)}; recreate it")
    return row


def _same_thickness(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


@dataclass(frozen=True)
class FolderLabels:
    """What the folder names say about the files in a folder (``None``/empty when they say nothing)."""

    patient: str | None
    dose: str | None
    thickness_mm: float | None
    kernel: str


def folder_labels(relative_dir: Path) -> FolderLabels:
    """Labels read from the directory names of a path relative to the root (the deepest match wins).

    >>> folder_labels(Path("L067/1mm B30/QD_1mm"))
    FolderLabels(patient='L067', dose='quarter', thickness_mm=1.0, kernel='B30')
    >>> folder_labels(Path("P01/full_1mm")).kernel  # a patient folder, not a kernel
    ''
    """
    patient = dose = thickness = None
    kernel = ""
    for part in relative_dir.parts:
        kernels, labelled = [], False
        for token in _TOKEN_SPLIT.split(part):
            if PATIENT_PATTERN.fullmatch(token):
                patient = token
            elif token.lower() in DOSE_TOKENS:
                dose, labelled = DOSE_TOKENS[token.lower()], True
            elif match := THICKNESS_PATTERN.fullmatch(token):
                thickness, labelled = float(match.group(1)), True
            elif KERNEL_PATTERN.fullmatch(token):
                kernels.append(token)
        if labelled and kernels:
            kernel = kernels[-1]
    return FolderLabels(patient, dose, thickness, kernel)


@dataclass(frozen=True)
class _Slice:
    patient: str
    dose: str
    thickness_mm: float
    kernel: str
    z: float
    rows: int
    columns: int
    path: str


def _read(path: Path) -> SliceInfo | str:
    """Header of one file, or the reason it cannot be used."""
    try:
        return read_slice_header(path)
    except InputError as err:
        return str(err)


def _candidate_files(root: Path) -> list[tuple[Path, FolderLabels]]:
    """Non-hidden files below dose folders, sorted, with the labels of their folders."""
    found = []
    for directory, subdirs, files in os.walk(root, followlinks=True):  # patient folders are often symlinks
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        labels = folder_labels(Path(directory).relative_to(root))
        if labels.dose is None:
            continue
        found.extend((Path(directory) / name, labels) for name in sorted(files) if not name.startswith("."))
    return found


def _to_slice(root: Path, path: Path, labels: FolderLabels, info: SliceInfo | str) -> _Slice | str:
    """Combine folder labels and header into a slice, or return why the file is skipped."""
    if isinstance(info, str):
        return info
    if info.modality not in ACCEPTED_MODALITIES:
        return f"modality {info.modality!r}, not one of {ACCEPTED_MODALITIES}; only CT slices are used"
    patient = labels.patient or (info.patient_id or "").strip()
    thickness = labels.thickness_mm or info.slice_thickness
    if not patient:
        return "no L### patient folder and no PatientID; put the files under a folder named after the patient"
    if not thickness:
        return "no <n>mm folder and no SliceThickness; put the files under a folder such as full_1mm"
    if info.position_along_normal is None:
        return "no slice position (ImagePositionPatient/ImageOrientationPatient); cannot pair it by position"
    assert labels.dose is not None  # only dose folders are candidates
    return _Slice(
        patient=patient,
        dose=labels.dose,
        thickness_mm=float(thickness),
        kernel=labels.kernel,
        z=float(info.position_along_normal),
        rows=int(info.rows),
        columns=int(info.columns),
        path=path.relative_to(root).as_posix(),
    )


def _pair_group(quarter: Sequence[_Slice], full: Sequence[_Slice], tolerance: float) -> list[tuple[int, int]]:
    """Match sorted quarter/full positions within ``tolerance`` by a merge walk; returns index pairs."""
    matches = []
    i = j = 0
    while i < len(quarter) and j < len(full):
        dz = quarter[i].z - full[j].z
        if abs(dz) <= tolerance:
            matches.append((i, j))
            i += 1
            j += 1
        elif dz < 0:
            i += 1
        else:
            j += 1
    return matches


def _pair(slices: Sequence[_Slice]) -> tuple[ManifestRow, ...]:
    """Rows for all slices, with shared pair keys for quarter/full slices at the same position."""
    groups: dict[tuple[str, float, str], dict[str, list[_Slice]]] = defaultdict(lambda: {d: [] for d in DOSES})
    for s in slices:
        groups[(s.patient, s.thickness_mm, s.kernel)][s.dose].append(s)
    rows: list[ManifestRow] = []
    for (patient, thickness, kernel), by_dose in sorted(groups.items()):
        quarter = sorted(by_dose["quarter"], key=lambda s: s.z)
        full = sorted(by_dose["full"], key=lambda s: s.z)
        keys: dict[str, str] = {}
        prefix = "_".join(part for part in (patient, f"{thickness:g}mm", kernel) if part)
        for n, (i, j) in enumerate(_pair_group(quarter, full, PAIR_TOLERANCE_FRACTION * thickness)):
            keys[quarter[i].path] = keys[full[j].path] = f"{prefix}_{n:04d}"
        for s in full + quarter:
            rows.append(
                ManifestRow(s.patient, s.dose, s.thickness_mm, s.kernel, s.z, keys.get(s.path, ""), s.rows,
                            s.columns, s.path)
            )
    return tuple(rows)


def scan_mayo(root: str | os.PathLike[str], workers: int = DEFAULT_WORKERS) -> Manifest:
    """Find the quarter/full-dose slices under ``root``, read their headers in parallel and pair them.

    Only reads from ``root``. Mismatches (slices without a partner) are logged and counted in
    :meth:`Manifest.pairing_summary`; unusable files are logged and listed in ``Manifest.skipped``.

    Args:
        root: the data folder, e.g. the AAPM-Mayo download with one folder per patient.
        workers: threads reading DICOM headers.

    Raises:
        InputError: root missing, or no usable quarter/full-dose slices found.
    """
    if not (isinstance(workers, int) and workers >= 1):
        raise InputError(f"workers={workers!r}: must be an integer >= 1")
    data_root = Path(root).expanduser().resolve()
    if not data_root.is_dir():
        raise InputError(f"{root}: not a folder; pass the AAPM-Mayo data root (one folder per patient)")
    candidates = _candidate_files(data_root)
    if not candidates:
        raise InputError(
            f"{root}: no full/quarter-dose folders found; expected <root>/<patient>/full_1mm, quarter_1mm "
            "(or FD_1mm/QD_1mm) folders of DICOM files"
        )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        infos = list(pool.map(_read, [path for path, _ in candidates]))
    slices: list[_Slice] = []
    skipped: list[str] = []
    for (path, labels), info in zip(candidates, infos, strict=True):
        result = _to_slice(data_root, path, labels, info)
        if isinstance(result, str):
            skipped.append(f"{path.relative_to(data_root).as_posix()}: {result}")
        else:
            slices.append(result)
    if skipped:
        logger.warning("skipped %d of %d files under dose folders, e.g. %s", len(skipped), len(candidates),
                       skipped[0])
    if not slices:
        raise InputError(f"{root}: no usable CT DICOM slices in the full/quarter-dose folders ({skipped[0]})")
    manifest = Manifest(root=data_root, rows=_pair(slices), skipped=tuple(skipped))
    for group in manifest.pairing_summary():
        if group.quarter_unpaired or group.full_unpaired:
            logger.warning(
                "%s: %d quarter-dose slice(s) without a full-dose partner, %d full-dose slice(s) without a "
                "quarter-dose partner (%d pairs)",
                group.label, group.quarter_unpaired, group.full_unpaired, group.paired,
            )
    logger.info("found %d slices of %d patients in %s", len(manifest), len(manifest.patients), data_root)
    return manifest
