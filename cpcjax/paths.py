"""Every file cpcjax reads or writes for a user, local or on Cloud Storage.

A user path (a workdir, a data dir, a report's folder, an audio file) may be
local or `gs://bucket/...`; cpcjax reaches either through `etils.epath`, the
path layer Orbax and TFDS already use, and through the functions here, which
take and return plain strings.

Cloud Storage emulator: setting `STORAGE_EMULATOR_HOST` and
`TENSORSTORE_GCS_HTTP_URL` to its URL is all a user sets; `configure_storage`
derives what the other libraries need from them (see EMULATOR_SETTINGS).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from etils import epath

REMOTE_PREFIXES = ("gs://",)
EMULATOR_HOST = "STORAGE_EMULATOR_HOST"
# What TFDS leaves in a data dir besides the datasets: its download and
# extraction cache, which a prepared copy does not need.
TFDS_SCRATCH = ("downloads",)


def _emulator_settings(url: str) -> dict[str, str]:
    """What each library needs to reach the emulator at `url`."""
    return {
        # Orbax's arrays go through TensorStore, which has its own variable.
        "TENSORSTORE_GCS_HTTP_URL": url,
        # etils sends gs:// to TensorFlow's GCS client whenever TensorFlow is
        # installed, and that client always calls the real endpoint; fsspec's
        # gcsfs honours STORAGE_EMULATOR_HOST.
        "EPATH_USE_TF": "false",
        # array_record (TFDS's random-access reader) uses google-cloud-cpp,
        # which reads only this one.
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
        # gcsfs otherwise first asks the storage-control gRPC API whether a
        # bucket is zonal, which an emulator does not serve: each call waits
        # 60 s before falling back to the JSON API.
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        # An emulator takes anonymous requests; without this, finding no
        # credentials first waits on the GCE metadata server for seconds.
        "NO_GCE_CHECK": "true",
    }


def configure_storage(environ: dict | None = None) -> dict[str, str]:
    """Points every storage library at the emulator named by STORAGE_EMULATOR_HOST.

    Does nothing without that variable, so real Cloud Storage keeps each
    library's own client. Variables the user set already are kept. Called
    when this module is imported, before any gs:// path is touched: etils and
    gcsfs read their variables once.

    Args:
      environ: the environment to update; `os.environ` by default.

    Returns:
      The variables set.
    """
    environ = os.environ if environ is None else environ
    host = environ.get(EMULATOR_HOST, "").strip()
    if not host:
        return {}
    url = host if "://" in host else f"http://{host}"
    added = {k: v for k, v in _emulator_settings(url).items() if k not in environ}
    environ.update(added)
    return added


configure_storage()


class StorageError(Exception):
    """A path cpcjax cannot reach: a missing bucket, no credentials, ..."""


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` names Cloud Storage rather than a local file."""
    return os.fspath(path).startswith(REMOTE_PREFIXES)


def tensorflow_reaches(path: str | os.PathLike) -> bool:
    """Whether TensorFlow's own file system can write `path`: not on an
    emulator, whose endpoint its GCS client does not take."""
    return not (is_remote(path) and os.environ.get(EMULATOR_HOST))


def resolve(path: str | os.PathLike) -> str:
    """`~` expanded and made absolute for a local path; a gs:// path as it is."""
    path = os.fspath(path)
    if is_remote(path):
        return path.rstrip("/") or path
    return os.path.abspath(os.path.expanduser(path))


def join(path: str | os.PathLike, *parts: str) -> str:
    """`path/part/...`, without touching a gs:// prefix."""
    return os.fspath(epath.Path(path).joinpath(*parts))


def name(path: str | os.PathLike) -> str:
    """The last component of `path` (the folder's own name for a folder)."""
    return epath.Path(resolve(path)).name


def parent(path: str | os.PathLike) -> str:
    return os.fspath(epath.Path(path).parent)


def relpath(path: str | os.PathLike, start: str | os.PathLike) -> str:
    """`path` relative to `start`, "/"-separated."""
    return epath.Path(path).relative_to(epath.Path(start)).as_posix()


def exists(path: str | os.PathLike) -> bool:
    return epath.Path(path).exists()


def isdir(path: str | os.PathLike) -> bool:
    return epath.Path(path).is_dir()


def isfile(path: str | os.PathLike) -> bool:
    return epath.Path(path).is_file()


def size(path: str | os.PathLike) -> int:
    return epath.Path(path).stat().length


def makedirs(path: str | os.PathLike) -> None:
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def read_text(path: str | os.PathLike) -> str:
    return epath.Path(path).read_text()


def read_bytes(path: str | os.PathLike) -> bytes:
    return epath.Path(path).read_bytes()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path`, making its folder."""
    p = epath.Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path`, making its folder."""
    p = epath.Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def read_json(path: str | os.PathLike, default=None):
    """The JSON document at `path`, or `default` when there is no such file."""
    p = epath.Path(path)
    return json.loads(p.read_text()) if p.is_file() else default


def write_json(path: str | os.PathLike, obj, indent: int | None = None) -> None:
    write_text(path, json.dumps(obj, indent=indent))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSON-lines file; [] when there is none."""
    p = epath.Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Adds rows at the end of a JSON-lines file, making it if missing.

    A Cloud Storage object cannot grow: gcsfs silently turns append mode into
    overwrite, so a remote file is read and written again whole (as
    TensorFlow's own GCS append does).
    """
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if not text:
        return
    if not is_remote(path):
        with open(resolve(path), "a") as f:
            f.write(text)
        return
    p = epath.Path(path)
    write_text(p, (p.read_text() if p.is_file() else "") + text)


def glob(directory: str | os.PathLike, pattern: str) -> list[str]:
    """Paths under `directory` matching `pattern` (e.g. "a/*/b.json"), sorted."""
    return sorted(os.fspath(p) for p in epath.Path(directory).glob(pattern))


def walk(top: str | os.PathLike) -> Iterator[tuple[str, list[str], list[str]]]:
    """(folder, subfolders, files) of every folder under `top`, in path order."""
    top = os.fspath(top)
    # fsspec names the folders it walks without their "gs://".
    scheme = top.split("://", 1)[0] + "://" if is_remote(top) else ""
    walked = [
        (root if root.startswith(scheme) else scheme + root, dirs, files)
        for root, dirs, files in (
            (os.fspath(r), sorted(d), sorted(f)) for r, d, f in epath.Path(top).walk()
        )
    ]
    yield from sorted(walked, key=lambda w: epath.Path(w[0]).parts)


def copy_tree(
    src: str | os.PathLike, dst: str | os.PathLike, exclude: Iterable[str] = ()
) -> None:
    """Copies every file under `src` to the same place under `dst`, replacing;
    files under the subfolders of `src` named in `exclude` stay behind."""
    for root, _, files in walk(src):
        if relpath(root, src).split("/")[0] in exclude:
            continue
        for f in files:
            target = epath.Path(dst, relpath(root, src), f)
            target.parent.mkdir(parents=True, exist_ok=True)
            epath.Path(root, f).copy(target, overwrite=True)


@contextlib.contextmanager
def staged_dir(dst: str | os.PathLike, exclude: Iterable[str] = ()) -> Iterator[str]:
    """A local folder whose files (but those under `exclude`) end up in `dst`.

    For writers that know only local files (array_record, matplotlib's
    savers, TensorBoard's under an emulator): a local `dst` is yielded
    itself; for a remote one a temporary folder, copied to `dst` when the
    block ends without an error and deleted either way, so an interrupted
    write leaves nothing behind in either place.
    """
    if not is_remote(dst):
        makedirs(dst)
        yield resolve(dst)
        return
    tmp = tempfile.mkdtemp(prefix="cpcjax-")
    try:
        yield tmp
        copy_tree(tmp, dst, exclude)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def local_copy(src: str | os.PathLike) -> Iterator[str]:
    """`src` as a local path: itself when local, else a temporary copy of the
    file or folder, deleted when the block ends."""
    if not is_remote(src):
        yield resolve(src)
        return
    tmp = tempfile.mkdtemp(prefix="cpcjax-")
    try:
        target = os.path.join(tmp, name(src))
        if isdir(src):
            copy_tree(src, target)
        else:
            epath.Path(src).copy(epath.Path(target))
        yield target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_reachable(path: str | os.PathLike, what: str = "path") -> None:
    """Fails in one line when `path` is on Cloud Storage that cannot be reached.

    Checked before any work, so a missing bucket or missing credentials stop
    a command before it writes anything, here or there.

    Raises:
      StorageError: naming `path` and the cause.
    """
    if not is_remote(path):
        return
    path = os.fspath(path)
    bucket = path.split("://", 1)[1].split("/", 1)[0]
    root = path.split("://", 1)[0] + "://" + bucket
    try:
        found = epath.Path(root).exists()
    except Exception as e:  # credentials, network: each library its own type
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(
            f"{what} {path}: cannot reach bucket {bucket}: {cause}"
        ) from e
    if not found:
        raise StorageError(f"{what} {path}: bucket {bucket} does not exist")
