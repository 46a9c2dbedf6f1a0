"""Discovery and the mask's jobs: running a Discover panel's job, disentangling a
direction against others (with its dialog), and filling the mask from a segmented part.

A mixin of :class:`~hspace_studio.gui.main_window.MainWindow` (``self`` is the window).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QLabel, QListWidget, QListWidgetItem,
                               QVBoxLayout)

from . import jobs as J
from .labels import shown_label
from .worker import JobHandle, JobResult


class DiscoveryControl:
    """Mixin of MainWindow; see the module docstring."""

    def run_discovery(self, job) -> Optional[JobHandle]:
        if isinstance(job, Exception):
            self.show_error(str(job))
            return None
        if self.model_info is None:
            self.show_error("Load a model first")
            return None
        if isinstance(job, J.DiscoverJacobian) and job.mask is not None and not job.mask.any():
            self.show_error("The mask is empty: paint a region first, or untick 'Use the painted mask'")
            return None
        if isinstance(job, J.DiscoverSupervised) and job.index_dir is None:
            from dataclasses import replace

            job = replace(job, index_dir=str(self.autosave.dir / "indexes"))
        return self.submit(job)

    def disentangle(self, target, against, name: Optional[str] = None) -> Optional[JobHandle]:
        against = tuple(tuple(a) for a in against if tuple(a) != tuple(target))
        if not against:
            self.show_error("Select the directions to disentangle against (besides the current one)")
            return None
        # named as the library shows the directions (numbered from one), and said
        titles = {(st.set_id, d.index): shown_label(d.index, d.label) for st, d in self.library.all_directions()}
        them = ", ".join(titles.get(a, str(a)) for a in against)
        if name is None and tuple(target) in titles:
            name = f"{titles[tuple(target)]} ⟂ {them}"
        handle = self.submit(J.Disentangle(tuple(target), against, name))
        self.show_info(f"Disentangling {titles.get(tuple(target), 'the direction')}: projecting out {them}")
        return handle

    def disentangle_dialog(self) -> None:
        sel = self.library.selected()
        if sel is None or sel[1] is None:
            self.show_error("Select the direction to disentangle (a direction, not a set)")
            return
        target = (sel[0], sel[1])
        others = [k for k in self.library.selected_keys() if k != target]
        if not others:
            dlg = QDialog(self)
            dlg.setWindowTitle("Disentangle against…")
            v = QVBoxLayout(dlg)
            v.addWidget(QLabel("Project the current direction off these directions:"))
            lst = QListWidget()
            for s, d in self.library.all_directions():
                if (s.set_id, d.index) == target:
                    continue
                it = QListWidgetItem(self.library.title(s, d))
                it.setData(Qt.ItemDataRole.UserRole, (s.set_id, d.index))
                it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                it.setCheckState(Qt.CheckState.Unchecked)
                lst.addItem(it)
            v.addWidget(lst)
            bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
            bb.accepted.connect(dlg.accept)
            bb.rejected.connect(dlg.reject)
            v.addWidget(bb)
            if dlg.exec() != QDialog.DialogCode.Accepted:
                return
            others = [lst.item(i).data(Qt.ItemDataRole.UserRole) for i in range(lst.count())
                      if lst.item(i).checkState() == Qt.CheckState.Checked]
        self.disentangle(target, others)

    def _show_discover(self, tab: int) -> None:
        self.docks["discover"].show()
        self.docks["discover"].raise_()
        self.discovery.setCurrentIndex(tab)

    def _mask_for_job(self) -> Optional[np.ndarray]:
        return self.mask.array.copy()

    def fill_part(self, part: str, mode: str = "add") -> Optional[JobHandle]:
        if self.traj_info is None:
            self.show_error("No image to segment yet")
            return None
        parts = self.brush.part_groups.get(part, (part,))

        def done(res: JobResult):
            if res.ok and not res.value["mask"].any():  # e.g. hair on a bald head: keep the mask
                self.show_info(f"The segmenter finds no {part.replace('_', ' ')} in this image: "
                               "the mask is unchanged", level="warning")
            elif res.ok:
                self.mask.combine(res.value["mask"], mode, f"Fill {part.replace('_', ' ')}")
            elif not res.cancelled:
                self.show_error(f"Fill from part failed: {res.error}")

        return self.submit(J.Segment(tuple(parts), self.brush.segmenter_spec), done)
