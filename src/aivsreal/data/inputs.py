"""What `predict` reads: folders, image files, zips, path lists and fsspec URLs, each image named by one string.

The driver lists the images (`expand_inputs`); whoever scores reads each one from its string
(`read_source`): a process of the local pool or a Ray actor. Both engines therefore get the same
strings, give the same rows and resume on the same keys (`resolved`).

How inputs are written (on the command line, or one per line of a path list):
- a folder: its images (by suffix), searched recursively, in sorted order;
- an image file, as it is;
- `archive.zip`: its image members in the zip's own order, each named `archive.zip!dir/name.jpg`
  (the `!` of Java's jar: URLs). Members are read from the archive, never extracted to disk, so a
  member called `../x.jpg` or `/etc/x.jpg` is only a name. A zip that cannot be opened (corrupt,
  unreadable) is one error row named by the archive's path;
- `list.txt` or `list.lst`: a path list, one input per line (blank lines skipped; a relative line is
  relative to the list's folder). A line may be a folder, an image, a zip, a member or a URL, not
  another list; a line that does not exist is that line's error row;
- `scheme://...` (`s3://`, `gs://`, `memory://`, `file://`, ...): a folder, image, zip or path list
  read with fsspec and the scheme's own package (s3fs for s3://, gcsfs for gs://);
- a local glob pattern: its matching files, each as above.
An input named on the command line that does not exist is a one-line error (exit 2): a typo, not data.
A local file whose name contains `.zip!` is that file, when it exists.
"""

from __future__ import annotations

import glob
import os
import re
import stat
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import IO, Any

from aivsreal.data.images import MAX_FILE_BYTES, BadImageError, check_size, is_image_name, read_limited
from aivsreal.errors import AivsrealError

ZIP_MARK = ".zip!"
LIST_SUFFIXES = (".txt", ".lst")
OPEN_ZIPS = 8  # archives each process keeps open: a list of a thousand zips must not hold a thousand files
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(source: str) -> bool:
    return _URL.match(source) is not None


def split_member(source: str) -> tuple[str, str] | None:
    """(archive, member) for `archive.zip!member`; None for anything else, and for a local file that
    exists under that very name."""
    i = source.lower().find(ZIP_MARK)
    if i < 0 or (not is_url(source) and os.path.lexists(source)):
        return None
    return source[: i + 4], source[i + len(ZIP_MARK) :]


def resolved(source: str) -> str:
    """One spelling per image, the resume key: ./x.jpg and /abs/x.jpg are one row, and so are the same
    member of ./a.zip and /abs/a.zip; a URL is its own key."""
    if is_url(source):
        return source
    member = split_member(source)
    if member:
        return f"{resolved(member[0])}!{member[1]}"
    return os.path.realpath(source)


def url_fs(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path) for a URL, or the one-line answer when fsspec or the scheme's package is
    missing."""
    try:
        import fsspec
    except ImportError:
        raise AivsrealError(f"{url}: URLs are read with fsspec: pip install fsspec (and s3fs for s3://, "
                            "gcsfs for gs://)") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:  # fsspec's own words: "Install s3fs to access S3"
        raise AivsrealError(f"{url}: {e}") from None


def open_binary(source: str) -> IO[bytes]:
    if is_url(source):
        fs, path = url_fs(source)
        return fs.open(path, "rb")
    return open(source, "rb")


_zips: OrderedDict[tuple[int, str], zipfile.ZipFile] = OrderedDict()
_zips_lock = threading.Lock()


def open_zip(archive: str) -> zipfile.ZipFile:
    """The archive, opened once per process and kept among the last OPEN_ZIPS: keyed by pid, because a
    forked worker must never read through its parent's handle (they would share one file offset).
    An evicted archive is not closed here: a thread may still be reading it; it closes when dropped."""
    key = (os.getpid(), archive)
    with _zips_lock:
        if key in _zips:
            _zips.move_to_end(key)
            return _zips[key]
        if not is_url(archive) and not stat.S_ISREG(os.stat(archive).st_mode):
            raise BadImageError(f"{archive}: not a regular file (a FIFO would hang the reader)")
        zf = zipfile.ZipFile(open_binary(archive) if is_url(archive) else archive)
        _zips[key] = zf
        if len(_zips) > OPEN_ZIPS:
            _zips.popitem(last=False)
        return zf


def image_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The members that are images by name, in the archive's order (macOS's resource forks left out)."""
    return [info for info in zf.infolist()
            if not info.is_dir() and is_image_name(info.filename) and "__MACOSX" not in info.filename]


def read_member(zf: zipfile.ZipFile, name: str, where: str) -> bytes:
    """A member's bytes, refused over MAX_FILE_BYTES by its header and again by what was inflated (the
    header may lie: a zip bomb); any failure of an untrusted archive is this member's BadImageError."""
    try:
        info = zf.getinfo(name)
        check_size(info.file_size, where)
        with zf.open(info) as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except BadImageError:
        raise
    except KeyError:
        raise BadImageError(f"{where}: no such member in the archive") from None
    except Exception as e:  # noqa: BLE001 - bad CRC, bad deflate data, encrypted, unknown compression
        raise BadImageError(f"{where}: cannot read ({why(e)})") from None
    check_size(len(data), where)
    return data


def read_source(source: str) -> bytes:
    """The bytes of one listed image, whatever holds it: a file, a zip member or a URL, with the same
    byte limit; any failure is this source's BadImageError, so that it is a row, never a failed job."""
    member = split_member(source)
    if member:
        try:
            zf = open_zip(member[0])
        except Exception as e:  # noqa: BLE001 - a missing or damaged archive is its members' error
            raise BadImageError(f"{source}: cannot open {member[0]} ({why(e)})") from None
        return read_member(zf, member[1], source)
    if source.lower().endswith(".zip"):  # listed on its own: it could not be opened as a zip
        try:
            open_zip(source)
        except Exception as e:  # noqa: BLE001
            raise BadImageError(f"{source}: not a readable zip file ({why(e)})") from None
        raise BadImageError(f"{source}: a zip file, not an image (`predict` scores its members)")
    if source.lower().endswith(LIST_SUFFIXES):
        raise BadImageError(f"{source}: a path list, not an image (a path list cannot name another)")
    if not is_url(source):
        return read_limited(source)
    try:
        fs, path = url_fs(source)
        check_size(fs.size(path) or 0, source)
        with fs.open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except BadImageError:
        raise
    except Exception as e:  # noqa: BLE001 - any backend's failure (not found, denied, network) is this row's
        raise BadImageError(f"{source}: cannot read ({why(e)})") from None
    check_size(len(data), source)
    return data


def why(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {str(e)[:160]}"


def expand_inputs(inputs: Iterable[str]) -> Iterator[str]:
    """Every image the inputs name, lazily and in order (the module docstring says how inputs are written)."""
    for item in inputs:
        yield from _expand(item, listed=False)


def _expand(item: str, listed: bool) -> Iterator[str]:
    member = split_member(item)
    if member:
        if not listed and not _exists(member[0]):
            raise AivsrealError(f"no such zip file: {member[0]}")
        yield item
        return
    kind = _probe(item, listed)
    if kind == "dir":
        yield from _walk(item)
    elif kind == "file":
        yield from _expand_file(item, listed)
    elif listed:
        yield item  # its row says that it cannot be read
    elif glob.has_magic(item) and not is_url(item):
        matches = sorted(glob.iglob(item, recursive=True))
        if not matches:
            raise AivsrealError(f"no files match {item}")
        for m in matches:
            if os.path.isfile(m):
                yield from _expand_file(m, listed)
    else:
        raise AivsrealError(f"no such file or folder: {item}")


def _expand_file(item: str, listed: bool) -> Iterator[str]:
    lower = item.lower()
    if lower.endswith(".zip"):
        try:
            names = [info.filename for info in image_members(open_zip(item))]
        except Exception:  # noqa: BLE001 - a damaged archive is one error row (read_source says why)
            names = None
        yield from ([item] if names is None else (f"{item}!{n}" for n in names))
    elif lower.endswith(LIST_SUFFIXES) and not listed:
        yield from _path_list(item)
    else:
        yield item  # a dangling link or a file that is no image is that file's error row


def _path_list(path: str) -> Iterator[str]:
    """The inputs of a path list, line by line; a name that is not UTF-8 survives (surrogateescape)."""
    try:
        with open_binary(path) as f:
            for raw in f:
                line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
                if line.strip():
                    yield from _expand(_beside(path, line), listed=True)
    except OSError as e:
        raise AivsrealError(f"{path}: cannot read this path list ({why(e)})") from None


def _beside(list_path: str, line: str) -> str:
    if is_url(line) or os.path.isabs(line):
        return line
    if is_url(list_path):
        return f"{list_path.rsplit('/', 1)[0]}/{line}"
    return os.path.join(os.path.dirname(list_path), line)


def _exists(item: str) -> bool:
    return _probe(item, listed=False) is not None


def _probe(item: str, listed: bool) -> str | None:
    """What an input is: "dir", "file" or None when it is not there (a dangling link is a file: its error
    row, not an abort). A store that cannot be asked (denied, offline) is one line (exit 2) for an input on
    the command line, an error row for a line of a path list."""
    if not is_url(item):
        return "dir" if os.path.isdir(item) else "file" if os.path.lexists(item) else None
    fs, path = url_fs(item)
    try:
        return "dir" if fs.isdir(path) else "file" if fs.exists(path) else None
    except Exception as e:  # noqa: BLE001 - any backend's failure, in its own words
        if listed:
            return None
        raise AivsrealError(f"{item}: cannot list ({why(e)})") from None


def _walk(folder: str) -> Iterator[str]:
    """A folder's images, recursively and sorted; a URL's children keep the URL's own spelling."""
    if is_url(folder):
        fs, base = url_fs(folder)
        prefix = folder.rstrip("/")
        try:
            found = sorted(fs.find(base))
        except Exception as e:  # noqa: BLE001
            raise AivsrealError(f"{folder}: cannot list ({why(e)})") from None
        for p in found:
            if is_image_name(p):
                yield prefix + p[len(base.rstrip("/")) :] if p.startswith(base) else fs.unstrip_protocol(p)
        return
    for dirpath, dirnames, names in os.walk(folder):
        dirnames.sort()
        for n in sorted(names):
            if is_image_name(n):
                yield os.path.join(dirpath, n)
