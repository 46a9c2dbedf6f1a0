"""The direction library: sets grouped by method, their directions with labels and values,
activation check boxes, rename / delete / reorder, and a strip of thumbnails."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QGraphicsOpacityEffect, QHBoxLayout, QHeaderView,
                               QLabel, QSizePolicy, QToolButton, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget)

from ..core.session import METHOD_GROUPS, DirectionState, SetState, summarize_values
from .canvas import qimage_from_array
from .labels import shown_label

ROLE_KIND = Qt.ItemDataRole.UserRole
ROLE_SET = Qt.ItemDataRole.UserRole + 1
ROLE_INDEX = Qt.ItemDataRole.UserRole + 2

Key = Tuple[str, int]  # (set_id, row of delta_h)


class DirectionLibrary(QWidget):
    activeChanged = Signal()
    selectionMoved = Signal(object)  # (set_id, index or None) or None
    changed = Signal()  # any edit (for the session's dirty flag)
    importRequested = Signal()
    exportRequested = Signal()
    disentangleRequested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.sets: List[SetState] = []
        self._collapsed: set = set()
        self._building = False

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        bar = QHBoxLayout()
        bar.setSpacing(2)
        self.actions: Dict[str, QAction] = {}

        def act(name, text, tip, slot, shortcut=None):
            a = QAction(text, self)
            a.setToolTip(tip + (f" ({QKeySequence(shortcut).toString()})" if shortcut else ""))
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
                a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            a.triggered.connect(slot)
            self.addAction(a)
            self.actions[name] = a
            b = QToolButton()
            b.setDefaultAction(a)
            bar.addWidget(b)
            return a

        act("import", "Import…", "Import direction files (.safetensors)", self.importRequested.emit)
        act("export", "Export…", "Export the selected set as a direction file", self.exportRequested.emit)
        act("rename", "Rename", "Rename the selected set or direction", self.rename_selected, "F2")
        act("delete", "Delete", "Delete the selected sets or directions", self.delete_selected,
            QKeySequence.StandardKey.Delete)
        act("up", "↑", "Move up", lambda: self.move_selected(-1), "Alt+Up")
        act("down", "↓", "Move down", lambda: self.move_selected(1), "Alt+Down")
        act("disentangle", "Disentangle…", "A new direction: the current one with the other "
            "selected ones projected out", self.disentangleRequested.emit)
        bar.addStretch(1)
        lay.addLayout(bar)

        self.tree = QTreeWidget()
        self.tree.setObjectName("directionLibrary")
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Direction", "Value"])
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setStretchLastSection(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed
                                  | QAbstractItemView.EditTrigger.SelectedClicked)
        self.tree.setUniformRowHeights(True)
        self.tree.itemChanged.connect(self._item_changed)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.tree.itemExpanded.connect(lambda it: self._collapsed.discard(self._set_of(it)))
        self.tree.itemCollapsed.connect(lambda it: self._collapsed.add(self._set_of(it)))
        lay.addWidget(self.tree, 1)

        self.strip = StripView()
        lay.addWidget(self.strip)
        self._rebuild()

    # -- queries -----------------------------------------------------------------------
    def find_set(self, set_id: str) -> Optional[SetState]:
        for s in self.sets:
            if s.set_id == set_id:
                return s
        return None

    def direction(self, key: Key) -> Optional[Tuple[SetState, DirectionState]]:
        s = self.find_set(key[0])
        if s is None:
            return None
        for d in s.directions:
            if d.index == key[1]:
                return s, d
        return None

    def ordered_sets(self) -> List[SetState]:
        order = [m for m, _ in METHOD_GROUPS]
        return sorted(self.sets, key=lambda s: order.index(s.method) if s.method in order else len(order))

    def all_directions(self) -> List[Tuple[SetState, DirectionState]]:
        return [(s, d) for s in self.ordered_sets() for d in s.directions]

    def active(self) -> List[Tuple[SetState, DirectionState]]:
        return [(s, d) for s, d in self.all_directions() if d.active]

    def selected(self) -> Optional[Tuple[str, Optional[int]]]:
        it = self.tree.currentItem()
        if it is None or it.data(0, ROLE_KIND) == "group":
            return None
        return it.data(0, ROLE_SET), it.data(0, ROLE_INDEX)

    def selected_keys(self) -> List[Key]:
        """Directions selected in the tree (a selected set counts as all its directions)."""
        out: List[Key] = []
        for it in self.tree.selectedItems():
            kind = it.data(0, ROLE_KIND)
            if kind == "dir":
                out.append((it.data(0, ROLE_SET), it.data(0, ROLE_INDEX)))
        return out

    def title(self, s: SetState, d: DirectionState) -> str:
        noise = "  [noise]" if s.h_space == "noise" else ""
        return f"{shown_label(d.index, d.label)}  ·  {s.name}{noise}"

    # -- changes -------------------------------------------------------------------------
    def unique_name(self, name: str, set_id: Optional[str] = None) -> str:
        """``name``, or ``name (2)``, ``name (3)``... if another set has it already."""
        taken = {s.name for s in self.sets if s.set_id != set_id}
        out, n = name, 2
        while out in taken:
            out, n = f"{name} ({n})", n + 1
        return out

    def add_sets(self, sets: Sequence[SetState], select: bool = True) -> None:
        for s in sets:
            if self.find_set(s.set_id) is None:
                s.name = self.unique_name(s.name)
                self.sets.append(s)
        self._rebuild()
        if select and sets:
            self.select(sets[0].set_id, None)
        self.changed.emit()

    def replace_all(self, sets: Sequence[SetState]) -> None:
        self.sets = []
        for s in sets:  # (a session saved before names were kept apart may repeat one)
            s.name = self.unique_name(s.name)
            self.sets.append(s)
        self._rebuild()
        self.activeChanged.emit()
        self.changed.emit()

    def set_statuses(self, statuses: Dict[str, Tuple[str, str]]) -> None:
        changed = False
        for s in self.sets:
            if s.set_id in statuses and (s.status, s.status_text) != tuple(statuses[s.set_id]):
                s.status, s.status_text = statuses[s.set_id]
                changed = True
        if changed:
            self._rebuild()
            self.activeChanged.emit()

    def set_active(self, key: Key, on: bool) -> None:
        found = self.direction(key)
        if found is not None and found[1].active != on:
            found[1].active = on
            self._rebuild()
            self.activeChanged.emit()
            self.changed.emit()

    def set_path(self, set_id: str, path: Optional[str]) -> None:
        s = self.find_set(set_id)
        if s is not None:
            s.path = path
            self.changed.emit()

    def rename(self, set_id: str, index: Optional[int], text: str) -> None:
        text = text.strip()
        if not text:
            return
        if index is None:
            s = self.find_set(set_id)
            if s is not None:
                s.name = self.unique_name(text, set_id)
        else:
            found = self.direction((set_id, index))
            if found is not None:
                found[1].label = text
        self._rebuild()
        self.activeChanged.emit()
        self.changed.emit()

    def remove(self, keys: Sequence[Tuple[str, Optional[int]]]) -> None:
        any_active = False
        for set_id, index in keys:
            s = self.find_set(set_id)
            if s is None:
                continue
            if index is None:
                any_active |= any(d.active for d in s.directions)
                self.sets.remove(s)
            else:
                for d in list(s.directions):
                    if d.index == index:
                        any_active |= d.active
                        s.directions.remove(d)
                if not s.directions:
                    self.sets.remove(s)
        self._rebuild()
        if any_active:
            self.activeChanged.emit()
        self.selectionMoved.emit(self.selected())
        self.changed.emit()

    def move(self, set_id: str, index: Optional[int], delta: int) -> None:
        s = self.find_set(set_id)
        if s is None:
            return
        if index is None:  # move the set among the sets of its group
            group = [x for x in self.sets if x.method == s.method]
            j = group.index(s) + delta
            if 0 <= j < len(group):
                a, b = self.sets.index(s), self.sets.index(group[j])
                self.sets[a], self.sets[b] = self.sets[b], self.sets[a]
        else:
            pos = [d.index for d in s.directions].index(index)
            j = pos + delta
            if 0 <= j < len(s.directions):
                s.directions[pos], s.directions[j] = s.directions[j], s.directions[pos]
        self._rebuild()
        self.select(set_id, index)
        self.activeChanged.emit()
        self.changed.emit()

    def rename_selected(self) -> None:
        it = self.tree.currentItem()
        if it is not None and it.data(0, ROLE_KIND) in ("set", "dir"):
            self.tree.editItem(it, 0)

    def delete_selected(self) -> None:
        keys = []
        for it in self.tree.selectedItems():
            kind = it.data(0, ROLE_KIND)
            if kind == "set":
                keys.append((it.data(0, ROLE_SET), None))
            elif kind == "dir" and not it.parent().isSelected():
                keys.append((it.data(0, ROLE_SET), it.data(0, ROLE_INDEX)))
        if keys:
            self.remove(keys)

    def move_selected(self, delta: int) -> None:
        sel = self.selected()
        if sel is not None:
            self.move(sel[0], sel[1], delta)

    def select(self, set_id: str, index: Optional[int]) -> None:
        it = self._item_for(set_id, index)
        if it is not None:
            self.tree.setCurrentItem(it)
            self.tree.scrollToItem(it)

    # -- tree ----------------------------------------------------------------------------
    def _set_of(self, it) -> Optional[str]:
        return it.data(0, ROLE_SET)

    def _item_for(self, set_id: str, index: Optional[int]):
        for g in range(self.tree.topLevelItemCount()):
            grp = self.tree.topLevelItem(g)
            for i in range(grp.childCount()):
                si = grp.child(i)
                if si.data(0, ROLE_SET) != set_id:
                    continue
                if index is None:
                    return si
                for j in range(si.childCount()):
                    di = si.child(j)
                    if di.data(0, ROLE_INDEX) == index:
                        return di
        return None

    def _rebuild(self) -> None:
        sel = self.selected()
        self._building = True
        self.tree.blockSignals(True)
        self.tree.clear()
        bad = QBrush(QColor(192, 57, 43))
        warn = QBrush(QColor(176, 120, 0))
        for method, title in METHOD_GROUPS:
            members = [s for s in self.sets if s.method == method]
            if not members:
                continue
            grp = QTreeWidgetItem([f"{title}", f"{len(members)} set{'s' if len(members) > 1 else ''}"])
            grp.setData(0, ROLE_KIND, "group")
            grp.setFlags(Qt.ItemFlag.ItemIsEnabled)
            f = grp.font(0)
            f.setBold(True)
            grp.setFont(0, f)
            self.tree.addTopLevelItem(grp)
            grp.setExpanded(True)
            for s in members:
                n_act = sum(d.active for d in s.directions)
                info = f"{s.count} dir{'s' if s.count != 1 else ''}" + (f", {n_act} on" if n_act else "")
                if s.h_space == "noise":  # a badge: these change the noise, not h
                    info = "noise · " + info
                if s.status == "mismatch":
                    info = "⚠ " + info
                si = QTreeWidgetItem([s.name, info])
                si.setData(0, ROLE_KIND, "set")
                si.setData(0, ROLE_SET, s.set_id)
                si.setData(0, ROLE_INDEX, None)
                si.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                            | Qt.ItemFlag.ItemIsEditable)
                tip = [f"{s.method}, {len(s.timesteps)} timesteps, h {tuple(s.h_shape)}, "
                       f"model {s.fingerprint}"]
                if s.path:
                    tip.append(s.path)
                if s.status_text:
                    tip.append(s.status_text)
                si.setToolTip(0, "\n".join(tip))
                si.setToolTip(1, "\n".join(tip))
                if s.status == "mismatch":
                    si.setForeground(0, bad)
                    si.setForeground(1, bad)
                elif s.status == "remapped":
                    si.setForeground(1, warn)
                grp.addChild(si)
                for d in s.directions:
                    di = QTreeWidgetItem([shown_label(d.index, d.label),
                                          summarize_values(s.method, s.value_of(d))])
                    di.setData(0, ROLE_KIND, "dir")
                    di.setData(0, ROLE_SET, s.set_id)
                    di.setData(0, ROLE_INDEX, d.index)
                    di.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                                | Qt.ItemFlag.ItemIsEditable | Qt.ItemFlag.ItemIsUserCheckable)
                    di.setCheckState(0, Qt.CheckState.Checked if d.active else Qt.CheckState.Unchecked)
                    di.setToolTip(0, "Tick to get a slider" if s.status != "mismatch" else s.status_text)
                    if s.status == "mismatch":
                        di.setForeground(0, bad)
                    si.addChild(di)
                si.setExpanded(s.set_id not in self._collapsed)
        if sel is not None:
            it = self._item_for(*sel) or (self._item_for(sel[0], None) if sel[1] is not None else None)
            if it is not None:
                self.tree.setCurrentItem(it)
        self.tree.blockSignals(False)
        self._building = False
        if not self.sets:
            self.strip.clear("Discover or import directions to fill the library.")

    def _item_changed(self, it: QTreeWidgetItem, col: int) -> None:
        """A check box or an edited label. Applied after the signal returns: applying
        rebuilds the tree, which must not happen while Qt is still inside the item."""
        if self._building or col != 0:
            return
        kind = it.data(0, ROLE_KIND)
        set_id, index = it.data(0, ROLE_SET), it.data(0, ROLE_INDEX)
        checked = it.checkState(0) == Qt.CheckState.Checked
        text = it.text(0)
        QTimer.singleShot(0, lambda: self._apply_item_change(kind, set_id, index, checked, text))

    def _apply_item_change(self, kind, set_id, index, checked: bool, text: str) -> None:
        if kind == "dir":
            found = self.direction((set_id, index))
            if found is None:
                return
            s, d = found
            if checked != d.active:
                self.set_active((set_id, index), checked)
                return
            if text != shown_label(d.index, d.label):  # (the tree shows rows from 1)
                self.rename(set_id, index, text)
        elif kind == "set":
            s = self.find_set(set_id)
            if s is not None and text != s.name:
                self.rename(set_id, None, text)

    def _selection_changed(self) -> None:
        self.selectionMoved.emit(self.selected())


class StripView(QWidget):
    """Thumbnails of the selected direction at several scales; a click sets that scale."""

    scaleClicked = Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("directionStrip")
        self._lay = QHBoxLayout(self)
        self._lay.setContentsMargins(2, 2, 2, 2)
        self._lay.setSpacing(3)
        self._labels: List[QLabel] = []
        self._note = QLabel()
        self._note.setStyleSheet("color: gray;")
        self._note.setWordWrap(True)
        self._lay.addWidget(self._note)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(96)
        self.thumb = 64
        self.images: list = []
        self.scales: Tuple[float, ...] = ()
        self.stale = False  # the thumbnails show an older image or direction state

    def mark_stale(self, note: str = "updating…") -> None:
        """Grey the thumbnails and say they are being redrawn (until :meth:`show_images`);
        without thumbnails yet, say that they are being made."""
        if not self._labels:
            self._note.setText("Rendering the thumbnails of the selected direction…")
            self._note.setVisible(True)
            return
        self.stale = True
        for box in self._labels:
            fx = QGraphicsOpacityEffect(box)
            fx.setOpacity(0.35)
            box.setGraphicsEffect(fx)
        self._note.setText(note)
        self._note.setVisible(True)

    def clear(self, note: str = "") -> None:
        self.stale = False
        for lb in self._labels:
            self._lay.removeWidget(lb)
            lb.deleteLater()
        self._labels = []
        self.images = []
        self._note.setText(note)
        self._note.setVisible(bool(note))
        self.setMinimumHeight(0)  # a note takes one line: the rows above get the room

    def show_images(self, images, scales) -> None:
        self.clear()
        self.images, self.scales = list(images), tuple(scales)
        for img, s in zip(images, scales):
            q = qimage_from_array(img)
            h, w = q.height(), q.width()
            z = max(1, self.thumb // max(h, w))
            pm = QPixmap.fromImage(q).scaled(QSize(w * z, h * z), Qt.AspectRatioMode.KeepAspectRatio,
                                             Qt.TransformationMode.FastTransformation)
            box = QWidget()
            v = QVBoxLayout(box)
            v.setContentsMargins(0, 0, 0, 0)
            v.setSpacing(0)
            lb = _ClickLabel(s)
            lb.setPixmap(pm)
            lb.setToolTip(f"scale {s:g} — click to use it")
            lb.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lb.clicked.connect(self.scaleClicked)
            cap = QLabel(f"{s:+.3g}")
            cap.setAlignment(Qt.AlignmentFlag.AlignCenter)
            v.addWidget(lb)
            v.addWidget(cap)
            self._labels.append(box)
            self._lay.addWidget(box)
        self._note.setVisible(False)
        self.setMinimumHeight(96)


class _ClickLabel(QLabel):
    clicked = Signal(float)

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def mousePressEvent(self, e) -> None:
        self.clicked.emit(self.scale)
