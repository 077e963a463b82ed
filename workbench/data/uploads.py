"""Private storage of uploaded eval-set files between upload and import.

Anyone who can reach the app acts as the server's user, so an upload is written under a random name (its extension
kept, which picks the reader) with mode 0600 in ``<database folder>/uploads`` (mode 0700), bounded by the size
limit of :func:`workbench.security.upload_limit_mb`, deleted once imported, and aged out otherwise.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from workbench.security import MAX_UPLOAD_ENV, positive_env_number

UPLOAD_DIR_NAME = "uploads"
UPLOAD_MAX_AGE_ENV = "WORKBENCH_UPLOAD_MAX_AGE_HOURS"
DEFAULT_UPLOAD_MAX_AGE_HOURS = 24.0
_MB = 1024 * 1024


def upload_dir(db: str | os.PathLike[str]) -> Path:
    """The private upload folder, ``<database folder>/uploads`` (mode 0700, created on demand)."""
    folder = Path(db).parent / UPLOAD_DIR_NAME
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask, and an older folder may be wider
    return folder


def store_upload(db: str | os.PathLike[str], filename: str, content: bytes, *, limit_mb: int) -> Path:
    """Write an upload under a random name (keeping its extension, which picks the reader) with mode 0600.

    The user's file name is never part of the path; callers keep it to label the eval set.
    """
    if len(content) > limit_mb * _MB:
        raise ValueError(f"{filename!r} is {len(content) / _MB:.1f} MB; uploads are limited to {limit_mb} MB. "
                         f"Put the file under a data root and use 'A file or folder on the server', or raise "
                         f"{MAX_UPLOAD_ENV} (and Streamlit's server.maxUploadSize) when starting the app.")
    suffix = Path(filename).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,10}", suffix) else ""
    path = upload_dir(db) / f"{secrets.token_hex(16)}{suffix}"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    return path


def save_upload(db: str | os.PathLike[str], filename: str, content: bytes, *, limit_mb: int) -> Path:
    """Remove stale uploads, then store this one (the app's upload button: one sweep per new file)."""
    clean_uploads(db)
    return store_upload(db, filename, content, limit_mb=limit_mb)


def remove_upload(path: str | os.PathLike[str], db: str | os.PathLike[str]) -> bool:
    """Delete a stored upload (after a successful import); anything outside the upload folder is left alone."""
    path = Path(path)
    folder = (Path(db).parent / UPLOAD_DIR_NAME).resolve()
    if path.parent.resolve() != folder or not path.is_file():
        return False
    path.unlink(missing_ok=True)
    return True


def upload_max_age_s() -> float:
    """Uploads older than this are deleted: ``$WORKBENCH_UPLOAD_MAX_AGE_HOURS`` (default 24 hours)."""
    return positive_env_number(UPLOAD_MAX_AGE_ENV, DEFAULT_UPLOAD_MAX_AGE_HOURS) * 3600


def clean_uploads(db: str | os.PathLike[str], *, max_age_s: float | None = None, now: float | None = None) -> int:
    """Delete uploads (files and links, in any sub-folder) older than ``max_age_s``; returns how many went.

    Links are removed, never followed, and emptied sub-folders (from older layouts) are dropped.
    """
    folder = Path(db).parent / UPLOAD_DIR_NAME
    if not folder.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - (upload_max_age_s() if max_age_s is None else max_age_s)
    removed = 0
    for parent, dirs, files in os.walk(folder, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(parent, d))]:
            entry = os.path.join(parent, name)
            try:
                if os.lstat(entry).st_mtime < cutoff:
                    os.unlink(entry)
                    removed += 1
            except FileNotFoundError:  # another session removed it first
                continue
        if parent != os.fspath(folder):
            try:
                os.rmdir(parent)
            except OSError:  # not empty: something recent is still there
                pass
    return removed
