"""User-facing errors.

Every problem a user can fix (a bad file, a wrong argument, a missing weight file) is raised as
:class:`InputError` with a one-line message that names the file or argument, what was wrong and what to
do. The command-line tools print that line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A problem with user input, reported to the user as one line.

    >>> str(InputError("scan.dcm: not a DICOM file; pass a folder of CT DICOM files"))
    'scan.dcm: not a DICOM file; pass a folder of CT DICOM files'
    """
