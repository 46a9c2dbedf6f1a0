"""Undo and redo of slider moves and library edits.

The library's state (its direction sets, with each direction's scale, window, range,
activation, name and order) is recorded after every change as a snapshot (the sets'
metadata shared, not copied); an undo step is the pair of snapshots around one change, and
undoing puts the earlier one back. Consecutive
moves of one slider within :data:`MERGE_S` seconds are one step (a drag is one undo).

The mask keeps its own stack (``gui/brush.py``). The Edit menu's Undo and Redo act on the
stack that changed last, through a ``QUndoGroup``.

The worker keeps the tensors of a set removed from the library while a step of this
history still holds it (:meth:`EditHistory.set_ids`), so that undoing the removal brings
back a usable set.
"""
from __future__ import annotations

import copy
import time
from dataclasses import astuple
from typing import Callable, List

from PySide6.QtCore import QObject
from PySide6.QtGui import QUndoCommand, QUndoStack

from ..core.session import DirectionState

MERGE_S = 2.0  # moves of one slider this close together are one undo step
UNDO_LIMIT = 200
_MERGE_ID = 4201  # QUndoCommand.id of mergeable slider moves


def snapshot(sets) -> tuple:
    """What an undo step keeps of the library: per set, the set (its metadata, shared, never
    copied: spectra can be large), its name and file, and each direction's state."""
    return tuple((s, s.name, s.path, tuple(astuple(d) for d in s.directions)) for s in sets)


def _key(snap) -> tuple:
    return tuple((s.set_id, name, path, dirs) for s, name, path, dirs in snap)


def restored(snap) -> list:
    """The library's sets as in ``snap`` (new objects: the history's stay as they were)."""
    out = []
    for s, name, path, dirs in snap:
        st = copy.copy(s)
        st.name, st.path = name, path
        st.directions = [DirectionState(*d) for d in dirs]
        out.append(st)
    return out


class LibraryStep(QUndoCommand):
    """One change of the library: its state before and after."""

    def __init__(self, history: "EditHistory", before, after, text: str, merge_key=None) -> None:
        super().__init__(text)
        self.history, self.before, self.after, self.merge_key = history, before, after, merge_key
        self._at = time.monotonic()
        self._done = True  # pushed after the change was made: the first redo does nothing

    def id(self) -> int:
        return _MERGE_ID if self.merge_key is not None else -1

    def mergeWith(self, other) -> bool:
        if other.merge_key != self.merge_key or other._at - self._at > MERGE_S:
            return False
        self.after, self._at = other.after, other._at
        return True

    def redo(self) -> None:
        if self._done:
            self._done = False
            return
        self.history._apply(self.after)

    def undo(self) -> None:
        self.history._apply(self.before)


class EditHistory(QObject):
    """The undo stack of the library's changes; ``restore(sets)`` puts a snapshot back."""

    def __init__(self, library, restore: Callable[[List], None], parent=None) -> None:
        super().__init__(parent)
        self.library = library
        self._restore = restore
        self.stack = QUndoStack(self)
        self.stack.setUndoLimit(UNDO_LIMIT)
        self._current = snapshot(library.sets)
        self._restoring = False

    def note(self, merge_key=None) -> None:
        """Record the library as it is now, if it changed, as an undo step named after the
        change (:func:`describe`); steps of one ``merge_key`` close together are one."""
        if self._restoring:
            return
        now = snapshot(self.library.sets)
        if _key(now) == _key(self._current):
            return
        before, self._current = self._current, now
        text = describe(restored(before), self.library.sets)
        self.stack.push(LibraryStep(self, before, now, text, merge_key))

    def reset(self) -> None:
        """Forget the history (a session was opened): the library as it is is the start."""
        self.stack.clear()
        self._current = snapshot(self.library.sets)

    def set_ids(self) -> set:
        """The sets any step of the history holds."""
        out = set()
        for i in range(self.stack.count()):
            step = self.stack.command(i)
            for snap in (step.before, step.after):
                out.update(entry[0].set_id for entry in snap)
        return out

    def _apply(self, snap) -> None:
        self._restoring = True
        try:
            self._restore(restored(snap))
        finally:
            self._restoring = False
        self._current = snap


def describe(before, after) -> str:
    """A short name of the change from ``before`` to ``after`` (library states)."""
    ids_b, ids_a = [s.set_id for s in before], [s.set_id for s in after]
    if set(ids_a) > set(ids_b):
        return "add directions"
    if set(ids_a) < set(ids_b):
        return "delete directions"
    if sorted(ids_a) == sorted(ids_b) and ids_a != ids_b:
        return "reorder"
    old = {s.set_id: s for s in before}
    for s in after:
        o = old.get(s.set_id)
        if o is None:
            continue
        if o.name != s.name:
            return f"rename '{o.name}'"
        if len(o.directions) != len(s.directions):
            return f"delete from '{s.name}'"
        for a, b in zip(o.directions, s.directions):
            if a.active != b.active:
                return f"{'tick' if b.active else 'untick'} '{b.label}'"
            if a.label != b.label:
                return f"rename '{a.label}'"
            if a.range != b.range:
                return f"range of '{b.label}'"
            if (a.scale, a.window, a.at_timestep, a.asymmetric) != (b.scale, b.window, b.at_timestep, b.asymmetric):
                return f"slider '{b.label}'"
    return "library change"
