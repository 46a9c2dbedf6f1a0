"""Sessions: the session document, saving and opening a session (the worker writes and
reads the files), restoring it into the window, autosave and the crash-restore offer
(:class:`~hspace_studio.gui.session.Autosave` keeps the files), and the Open recent menu.

A mixin of :class:`~hspace_studio.gui.main_window.MainWindow` (``self`` is the window).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from . import jobs as J
from .file_dialogs import ask_path
from .worker import JobHandle, JobResult


class SessionControl:
    """Mixin of MainWindow; see the module docstring."""

    def session_doc(self) -> dict:
        info = self.model_info
        steps, eta = self._sampling_params()
        return {
            "app": "hspace-studio",
            "model": {"source": info.source if info else self.source_panel.model_source(),
                      "h_space": info.h_space if info else self.source_panel.h_space.currentText(),
                      "fingerprint": info.fingerprint if info else None,
                      **({"guide": info.guide, "guide_weight": info.guide_weight} if info and info.guide else {}),
                      **({"timesteps": info.timesteps} if info and info.timesteps else {}),
                      **({"loras": [list(x) for x in info.loras]} if info and info.loras else {}),
                      **({"model_config": info.model_config} if info and info.model_config else {})},
            "source": dict(self.traj_info.source) if self.traj_info else dict(self._source),
            "controls": {"seed": self.source_panel.seed.value(), "steps": steps, "eta": eta},
            "library": [s.to_json() for s in self.library.sets],
            "selected": list(self.library.selected()) if self.library.selected() else None,
            "view": {"mode": self.canvas.view, "mask_visible": self.canvas.mask_visible,
                     "mask_opacity": self.brush.opacity.value(), "brush_radius": self.brush.size_box.value(),
                     "progressive": self.progressive,
                     "keep_edits_in_mask": self.brush.keep_inside.isChecked(),
                     "free_steps": self.brush.free_steps.value()},
        }

    def save_session(self, path: str, quiet: bool = False) -> JobHandle:
        """Save the session to ``path``; ``quiet``: an autosave (the window keeps its
        session's name; the autosave records that name for a restore after a crash)."""
        doc = self.session_doc()
        if quiet and self.session_path:
            doc["autosave_of"] = str(self.session_path)
        job = J.SaveSession(str(path), doc, self.mask.array.copy(),
                            tuple(s.set_id for s in self.library.sets))

        def done(res: JobResult):
            if res.ok:
                if not quiet:
                    self.session_path = str(path)
                    self.dirty = False
                    self.recent.add("sessions", str(path))
                    self._update_title()
                    self.show_info(f"session saved: {path}")
            elif not res.cancelled:
                self.show_error(f"Saving the session failed: {res.error}")

        return self.submit(job, done)

    def save_session_action(self) -> None:
        if self.session_path:
            self.save_session(self.session_path)
        else:
            self.save_session_dialog()

    def save_session_dialog(self) -> None:
        p = ask_path(self, self.settings, "save_session")
        if p:
            self.save_session(p)

    def open_session(self, path: str, autosave: bool = False) -> JobHandle:
        self._loading_session = True

        def done(res: JobResult):
            try:
                if res.ok:
                    self._session_loaded(res.value, None if autosave else path)
                    if autosave:  # unsaved changes to the session it was made of, if any
                        of = res.value.doc.get("autosave_of")
                        self.session_path = of if isinstance(of, str) and of else None
                        self.dirty = True
                        self._update_title()
                elif not res.cancelled:
                    self.show_error(f"Cannot open the session: {res.error}")
            finally:
                self._loading_session = False

        return self.submit(J.LoadSession(str(path), self.device), done)

    def open_session_dialog(self) -> None:
        p = ask_path(self, self.settings, "open_session")
        if p:
            self.open_session(p)

    def _session_loaded(self, pl: J.SessionPayload, path: Optional[str]) -> None:
        self._loading_session = True
        doc = pl.doc
        if pl.model is not None:
            self.model_info = pl.model
            self.source_panel.set_model_source(pl.model.source, self.recent.get("models"))
            self.source_panel.set_guidance(pl.model.source, pl.model.guide, pl.model.guide_weight)
            self.source_panel.set_timesteps(pl.model.timesteps)
            self.mask.reset(pl.model.image_size)
        c = doc.get("controls") or {}
        self.source_panel.set_values(seed=c.get("seed"), steps=c.get("steps"), eta=c.get("eta"),
                                     h_space=(doc.get("model") or {}).get("h_space"))
        self.library.replace_all(pl.sets)
        self.history.reset()  # (as the mask's: an opened session starts a history)
        if pl.trajectory is not None:
            self._trajectory_loaded(pl.trajectory)
        else:
            self._source = dict(doc.get("source") or {"kind": "seed"})
        self.mask.restore(pl.mask)
        v = doc.get("view") or {}
        try:
            if v.get("mode") in ("edited", "original", "split"):
                self.set_view(v["mode"])
            if "mask_opacity" in v:
                self.brush.opacity.setValue(int(v["mask_opacity"]))
            if "mask_visible" in v:
                self.brush.show_mask.setChecked(bool(v["mask_visible"]))
            if "free_steps" in v:
                self.brush.free_steps.setValue(int(v["free_steps"]))
            if "keep_edits_in_mask" in v:
                self.brush.keep_inside.setChecked(bool(v["keep_edits_in_mask"]))
            if "brush_radius" in v:
                self.brush.size_box.setValue(float(v["brush_radius"]))
            if "progressive" in v:
                self.act["progressive"].setChecked(bool(v["progressive"]))
        except (TypeError, ValueError):
            pass
        sel = doc.get("selected")
        if sel:
            self.library.select(sel[0], sel[1])
        self._sync_sliders()
        self.session_path = path
        self.dirty = False
        if path:
            self.recent.add("sessions", path)
        self._loading_session = False
        self._update_title()
        self.request_preview()
        for w in pl.warnings:
            self.show_info(w, level="warning")
        self.show_info(f"session opened{': ' + path if path else ''}")

    def _autosave(self) -> None:
        self.autosave.touch()
        if self.dirty and not self._handles and not self.render_in_flight and self.model_info is not None:
            # (not while a render is in flight: the save would wait for it, its bar shown)
            self.save_session(str(self.autosave.path), quiet=True)

    def _offer_restore(self) -> None:
        stale = self.autosave.stale()
        if not stale:
            return
        path = stale[0]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))

        def restore():
            self.restore_autosave(path)

        self.show_info(f"hspace-studio did not exit cleanly last time. An autosaved session from "
                       f"{when} is available.", level="warning", action=("Restore", restore))
        self._stale_autosave = path

    def restore_autosave(self, path=None) -> Optional[JobHandle]:
        path = Path(path or getattr(self, "_stale_autosave", ""))
        if not path.is_file():
            return None
        h = self.open_session(str(path), autosave=True)
        done = self._callbacks.get(h.id)

        def then(res):
            if done is not None:
                done(res)
            self.autosave.discard(path)

        self._callbacks[h.id] = then
        return h

    def _fill_recent(self) -> None:
        m = self.recent_menu
        m.clear()
        for kind, title, opener in (("sessions", "Sessions", self.open_session),
                                    ("images", "Images", self.open_image),
                                    ("directions", "Direction files", lambda p: self.import_directions([p]))):
            items = self.recent.get(kind)
            if not items:
                continue
            m.addSection(title)
            for p in items:
                a = m.addAction(Path(p).name)
                a.setToolTip(p)
                a.triggered.connect(lambda _c=False, p=p, f=opener, k=kind: self._open_recent(k, p, f))
        if m.isEmpty():
            m.addAction("(none)").setEnabled(False)

    def _open_recent(self, kind, path, opener) -> None:
        if not Path(path).exists():
            self.recent.remove(kind, path)
            self.show_error(f"{path} no longer exists")
            return
        opener(path)
