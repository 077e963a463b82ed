"""ZIP eval sets: one table (CSV, TSV, JSONL or Parquet) and its images, image paths relative to the archive.

An archive is untrusted input. Members are extracted one at a time into a private folder (mode 0700) and refused
when a name is absolute, climbs out with ``..``, is a link or a special file, is encrypted or repeats an earlier
name; the archive is refused above :data:`MAX_MEMBERS` members or above ``$WORKBENCH_ZIP_MAX_MB`` uncompressed
(counted while writing, never trusted from the headers: the zip-bomb guard). macOS metadata (``__MACOSX/``,
``._*``, ``.DS_Store``) is skipped. As for any table, image paths are relative to the table's folder (the archive's
root when the table is at the top; the zipped folder when a whole folder was zipped) unless an image root inside
the archive is given.

Where the images live afterwards: the extraction folder is ``<database folder>/media/<eval set>/archive-<random>``,
so after a successful import it simply stays as the eval set's media folder (the stored image paths point into
it and runs read them there; deleting the eval set deletes it). A validation, a rejected or failed import removes
it. Nothing is copied twice and nothing outside the database's folder is written.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from workbench.data.readers import get_importer, list_importers
from workbench.security import positive_env_number

ARCHIVE_EXTENSIONS = (".zip",)
MAX_MEMBERS = 200_000
ZIP_MAX_MB_ENV = "WORKBENCH_ZIP_MAX_MB"
DEFAULT_ZIP_MAX_MB = 8192.0
_CHUNK = 1 << 20
_JUNK_NAMES = (".DS_Store", "Thumbs.db")


class ArchiveError(ValueError):
    """An archive that cannot be imported safely or holds no usable table; the message says what to change."""


def is_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ZIP file the importer unpacks first (by extension, like every other format)."""
    path = Path(path)
    return path.suffix.lower() in ARCHIVE_EXTENSIONS and not path.is_dir()


def max_uncompressed_bytes() -> int:
    """The most an archive may unpack to: ``$WORKBENCH_ZIP_MAX_MB`` (default 8192 MB)."""
    return int(positive_env_number(ZIP_MAX_MB_ENV, DEFAULT_ZIP_MAX_MB) * 1024 * 1024)


def _table_extensions(fmt: str | None) -> dict[str, str]:
    """File extension -> importer name of the table formats (not the image-folder importer)."""
    names = [fmt] if fmt else list_importers()
    return {ext: spec.name for spec in map(get_importer, names) if not spec.reads_directory
            for ext in spec.extensions}


def _is_junk(parts: tuple[str, ...]) -> bool:
    return parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] in _JUNK_NAMES


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's safe relative path, None for metadata to skip; anything unsafe is an :class:`ArchiveError`."""
    raw = info.filename
    name = raw.replace("\\", "/")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts or "\x00" in name:
        raise ArchiveError(f"archive member {raw!r} points outside the archive (absolute path or '..'); "
                           "re-create the archive from inside its folder")
    if not parts or _is_junk(parts):
        return None
    if info.flag_bits & 0x1:
        raise ArchiveError(f"archive member {raw!r} is encrypted; re-create the archive without a password")
    kind = stat.S_IFMT(info.external_attr >> 16)  # Unix file type; 0 when the archiver recorded none
    if info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
        raise ArchiveError(f"archive member {raw!r} is {kind}; links are never extracted — put the file itself "
                           "in the archive")
    return PurePosixPath(*parts)


@dataclass(frozen=True)
class ArchivePlan:
    """An archive's listing after the safety checks: each member to extract with its safe relative path, and the
    table to import."""

    members: list[tuple[zipfile.ZipInfo, PurePosixPath]]
    table: PurePosixPath | None  # None when reading the archive as an image folder
    fmt: str


def plan_archive(archive: zipfile.ZipFile, *, fmt: str | None = None, limit_bytes: int | None = None) -> ArchivePlan:
    """Check every member's name, kind and declared size, and find the table.

    ``fmt`` names the table's importer when the archive holds several candidates, or ``folder`` to read the
    archive as an image folder (captions from file names).
    """
    limit = max_uncompressed_bytes() if limit_bytes is None else limit_bytes
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ArchiveError(f"the archive has {len(infos):,} members; the limit is {MAX_MEMBERS:,}. Split it, or "
                           "unpack it on the server and import the folder")
    members = [(info, path) for info in infos if (path := _member_path(info)) is not None]
    declared = sum(info.file_size for info, _ in members)
    if declared > limit:
        raise ArchiveError(_too_large(declared, limit))
    files = [path for info, path in members if not info.is_dir()]
    if fmt == "folder" or (fmt and get_importer(fmt).reads_directory):
        return ArchivePlan(members, None, get_importer(fmt).name)
    extensions = _table_extensions(fmt)
    tables = [path for path in files if path.suffix.lower() in extensions]
    if len(tables) != 1:
        what = "no table" if not tables else f"{len(tables)} tables ({', '.join(map(str, tables[:5]))})"
        raise ArchiveError(f"the archive holds {what}; it needs exactly one {'/'.join(sorted(extensions))} file "
                           "beside its images" + (" (or pass the format of the one to read)" if tables else
                                                  " (or choose the format 'folder' to read its images by folder)"))
    return ArchivePlan(members, tables[0], extensions[tables[0].suffix.lower()])


def _too_large(size: int, limit: int) -> str:
    return (f"the archive unpacks to more than {limit / 2**20:,.0f} MB ({size / 2**20:,.0f} MB); raise "
            f"{ZIP_MAX_MB_ENV} if you trust it, or unpack it on the server and import the folder")


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask


def extract_members(archive: zipfile.ZipFile, members: list[tuple[zipfile.ZipInfo, PurePosixPath]], folder: Path,
                    *, limit_bytes: int | None = None) -> None:
    """Write ``members`` under ``folder`` (which must exist): files mode 0600, never through a link, never over
    an existing file, and stopping once more than the limit has actually been written."""
    limit = max_uncompressed_bytes() if limit_bytes is None else limit_bytes
    root = folder.resolve()
    written = 0
    for info, relative in members:
        target = root.joinpath(*relative.parts)
        if not target.resolve().is_relative_to(root):  # a folder made earlier cannot be a link, but check anyway
            raise ArchiveError(f"archive member {info.filename!r} resolves outside the extraction folder")
        if info.is_dir():
            _private_dir(target)
            continue
        _private_dir(target.parent)
        try:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            raise ArchiveError(f"archive member {info.filename!r} appears twice; keep one copy") from None
        with os.fdopen(descriptor, "wb") as out, archive.open(info) as source:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise ArchiveError(_too_large(written, limit))
                out.write(chunk)


@dataclass(frozen=True)
class ExtractedArchive:
    """An archive unpacked into its private folder: the table (or the folder itself for the folder importer), its
    importer, and the image root image paths are relative to."""

    folder: Path
    table: Path
    fmt: str
    image_root: Path

    def remove(self) -> None:
        """Delete the extraction (and the eval set's media folder when nothing else is in it)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:  # other media of this eval set, or already gone
            pass


def image_root_in(root: Path, table: Path, image_root: str | os.PathLike[str] | None) -> Path:
    """``image_root`` taken relative to the archive's root (it must stay inside), else the table's folder."""
    if image_root is None or str(image_root) == "":
        return table if table.is_dir() else table.parent
    relative = Path(image_root)
    resolved = (root / relative).resolve()
    if relative.is_absolute() or not resolved.is_relative_to(root):
        raise ArchiveError(f"image root {str(image_root)!r} must be a folder inside the archive (relative to it); "
                           "image paths in an archive are relative to the archive")
    return resolved


def extract_archive(path: str | os.PathLike[str], parent: str | os.PathLike[str], *, fmt: str | None = None,
                    image_root: str | os.PathLike[str] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> ExtractedArchive:
    """Unpack ``path`` safely into a new private folder ``parent/archive-<random>``; on any error nothing is left.

    ``image_root`` is a folder inside the archive (relative to its root) that image paths are relative to;
    default: the table's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"archive not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ArchiveError(f"{path.name} is not a ZIP archive (or it is damaged); re-create it")
    parent = Path(parent)
    _private_dir(parent)
    folder = parent / f"archive-{secrets.token_hex(8)}"
    _private_dir(folder)
    extracted = None
    try:
        with zipfile.ZipFile(path) as archive:
            plan = plan_archive(archive, fmt=fmt)
            extract_members(archive, plan.members, folder)
        root = folder.resolve()
        table = root.joinpath(*plan.table.parts) if plan.table else root
        extracted = ExtractedArchive(folder=root, table=table, fmt=plan.fmt,
                                     image_root=image_root_in(root, table, image_root))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise ArchiveError(f"{path.name} cannot be read as a ZIP archive ({exc}); re-create it") from exc
    finally:
        if extracted is None:
            ExtractedArchive(folder, folder, "", folder).remove()
    if progress is not None:
        progress(1, 1)
    return extracted
