"""Session plumbing on the Qt side: autosave with crash detection, and recent files.

The session file itself (JSON + safetensors sidecar) is :mod:`hspace_studio.core.session`;
the worker writes and reads it (it owns the tensors). Here:

- :class:`Autosave`: each running window writes ``lock-<pid>.json`` in the state folder
  and, every few minutes while there are unsaved changes, ``autosave-<pid>.json`` (a
  full session). A clean exit removes both. At start, a lock whose process is gone
  marks an unclean exit; its autosave is offered for restoring.
- :class:`RecentFiles`: most-recently-used lists kept in ``QSettings``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from PySide6.QtCore import QObject, QSettings, QStandardPaths, QTimer, Signal

from ..core.atomic import write_text
from ..core.session import remove_session

STALE_HEARTBEAT_S = 15 * 60  # where a pid cannot be checked (Windows): lock older than this


def default_state_dir() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".hspace-studio")


def _pid_alive(pid: int, heartbeat: float) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform.startswith("win"):
        return time.time() - heartbeat < STALE_HEARTBEAT_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class Autosave(QObject):
    """Periodic autosave and the lock file that tells a crash from a clean exit."""

    due = Signal()  # time to autosave (the window decides whether anything changed)

    def __init__(self, state_dir=None, interval_s: float = 120.0, parent=None) -> None:
        super().__init__(parent)
        self.dir = Path(state_dir) if state_dir else default_state_dir()
        self.pid = os.getpid()
        self.lock = self.dir / f"lock-{self.pid}.json"
        self.path = self.dir / f"autosave-{self.pid}.json"
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.due)
        self.interval_s = float(interval_s)

    def start(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.touch()
        except OSError as e:
            print(f"warning: cannot write the autosave lock in {self.dir}: {e}", file=sys.stderr)
        if self.interval_s > 0:
            self.timer.start(int(self.interval_s * 1000))

    def touch(self) -> None:
        write_text(self.lock, json.dumps({"pid": self.pid, "heartbeat": time.time(),
                                          "autosave": self.path.name}))

    def stale(self) -> List[Path]:
        """Autosaves left by windows that did not exit cleanly, newest first."""
        out = []
        for lock in self.dir.glob("lock-*.json"):
            if lock == self.lock:
                continue
            try:
                info = json.loads(lock.read_text())
                pid, hb = int(info.get("pid", -1)), float(info.get("heartbeat", 0))
            except (OSError, ValueError, TypeError, AttributeError, RecursionError):
                continue
            if _pid_alive(pid, hb):
                continue
            auto = self.dir / str(info.get("autosave", f"autosave-{pid}.json"))
            if auto.is_file():
                out.append(auto)
            else:
                self._drop(lock, None)
        return sorted(out, key=lambda p: p.stat().st_mtime, reverse=True)

    def discard(self, autosave: Path) -> None:
        """Forget a stale autosave (restored or declined)."""
        pid = autosave.stem.split("-")[-1]
        self._drop(self.dir / f"lock-{pid}.json", autosave)

    def _drop(self, lock: Path, autosave: Optional[Path]) -> None:
        try:
            lock.unlink()
        except OSError:
            pass
        if autosave is not None:
            remove_session(autosave)

    def finish(self) -> None:
        """A clean exit: remove this window's lock and autosave."""
        self.timer.stop()
        self._drop(self.lock, self.path)


class RecentFiles:
    """Most-recently-used lists in QSettings under ``recent/<kind>``."""

    MAX = 10

    def __init__(self, settings: QSettings) -> None:
        self.settings = settings

    def get(self, kind: str) -> List[str]:
        v = self.settings.value(f"recent/{kind}", [])
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in (v or []) if x]

    def add(self, kind: str, path: str) -> None:
        items = [p for p in self.get(kind) if p != path]
        self.settings.setValue(f"recent/{kind}", [path, *items][: self.MAX])

    def remove(self, kind: str, path: str) -> None:
        self.settings.setValue(f"recent/{kind}", [p for p in self.get(kind) if p != path])
