"""The ingest work folder: where compressed audio is copied aside (plaintext), and the
removal of what a killed pipeline left there."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from storage.errors import BackendUnavailable

log = logging.getLogger(__name__)


#: Where a pipeline copies compressed audio aside (``<data_dir>/work/ingest``, 0700);
#: one ``callvault-ingest-<pid>-*`` folder per recording, removed when it is stored.
WORK_FOLDER = Path("work") / "ingest"
WORK_PREFIX = "callvault-ingest-"


def work_folder(data_dir: Path) -> Path:
    """The private folder under ``data_dir`` where ingest keeps its working copies."""
    return data_dir / WORK_FOLDER


def private_folder(folder: Path) -> Path:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot use the ingest work folder {folder}: {exc.strerror or exc}"
        ) from exc
    return folder


def default_work_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"callvault-work-{os.getuid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's live process
    return True


def clear_work_folder(folder: Path) -> int:
    """Create the private work folder and delete the working copies (plaintext) a
    killed pipeline left in it: every ``callvault-ingest-*`` entry except those of
    another live process (sibling workers share the data dir). Returns how many
    were removed. Called by the worker before it consumes."""
    private_folder(folder)
    removed = 0
    for entry in folder.glob(f"{WORK_PREFIX}*"):
        owner = entry.name.removeprefix(WORK_PREFIX).split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and _alive(int(owner)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d leftover ingest work folder(s) in %s", removed, folder)
    return removed
