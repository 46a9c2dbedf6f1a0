"""Slider previews and strips: a slider move asks the worker for the exact edited image
(a preview request) and shows at once the cross-fade of the moved direction's strip
images (:mod:`~hspace_studio.gui.node_preview`); strips (the library's, and the one of the
direction last moved or ticked) are asked for at the lowest priority and kept per
direction with the context they were made in (image, region, model, other edits).
Also the library and slider rows kept in step, the region edits stay inside, and the
preview and exact latencies in the status bar.

A mixin of :class:`~hspace_studio.gui.main_window.MainWindow` (``self`` is the window,
which holds the state: ``_preview_id``, ``_preview_req``, ``_nodes``, ``_strip_*`` ...).
"""
from __future__ import annotations

import time
from typing import Optional, Tuple

from . import jobs as J
from .node_preview import NodeImages
from ..app.requests import EditItem, PreviewRequest, StripRequest

STRIP_SCALES = (-1.0, -0.5, 0.0, 0.5, 1.0)  # times the direction's slider range
STRIP_NOTE_AFTER_S = 0.5  # a strip's progress is shown on its slider once it has taken this long


def _others(edits, key) -> tuple:
    """The edits besides direction ``key``'s that change the image (scale not 0)."""
    return tuple(e for e in edits if (e.set_id, e.index) != tuple(key) and e.scale != 0.0)


def _changing(edits) -> tuple:
    """The edits that change the image (scale not 0)."""
    return tuple(e for e in edits if e.scale != 0.0)


class PreviewControl:
    """Mixin of MainWindow; see the module docstring."""

    def current_edits(self) -> Tuple[EditItem, ...]:
        out = []
        for s, d in self.library.active():
            if s.status == "mismatch":
                continue
            out.append(EditItem(s.set_id, d.index, float(d.scale),
                                tuple(d.window) if d.window is not None else None, d.at_timestep,
                                asymmetric=d.asymmetric))
        return tuple(out)

    def request_preview(self, sent_at: Optional[float] = None) -> Optional[int]:
        """Ask for the edited image of the current slider state; returns the request id.
        ``sent_at``: when the user asked (a slider move), for the latency shown."""
        if self.traj_info is None:
            return None
        self._preview_id += 1
        req = PreviewRequest(self._preview_id, self.current_edits(), self.progressive,
                             time.perf_counter() if sent_at is None else sent_at)
        self._preview_req = req
        self.worker.request_preview(req)
        if self._rendering is None:
            self._render_clock.start()
        return req.id

    @property
    def preview_id(self) -> int:
        """The id of the newest preview request (a slider state sent to the engine)."""
        return self._preview_id

    @property
    def rendering(self) -> Optional[tuple]:
        """(step, steps) of a render that has taken a while and is still running, else None."""
        return self._rendering

    @property
    def strip_making(self) -> Optional[tuple]:
        """The direction whose strip the engine is making, or None."""
        return self._strip_pending[1] if self._strip_pending is not None else None

    @property
    def selected_strip_key(self) -> Optional[tuple]:
        """The direction whose thumbnails the library shows (the selected one), or None."""
        return self._strip_key

    def has_strip(self, key) -> bool:
        """Whether direction ``key``'s strip (its slider's instant preview) is here."""
        return tuple(key) in self._nodes

    @property
    def render_in_flight(self) -> bool:
        """Whether the newest slider state's exact image is still being made."""
        return self._preview_req is not None and self.shown_preview_id < self._preview_req.id

    def _render_is_slow(self) -> None:
        if self.render_in_flight and self._rendering is None:
            self._set_rendering((0, len(self.traj_info.timesteps) if self.traj_info else 0))

    def _preview_ready(self, res) -> None:
        if res.id != self._preview_id:  # an older request: the user has moved on
            self.previews_dropped += 1
            return
        if res.final:
            self.shown_preview_id = res.id
            self._set_rendering(None)
        if res.error:
            self.statusBar().showMessage(f"preview failed: {res.error}", 8000)
            self.messages.show_message(f"Preview failed: {res.error}", "error", key="preview")
            return
        if not res.final:
            if res.id == self._cancelled_render:
                return
            self._set_rendering((res.step, res.steps))
            # the step's preview, unless the strip's cross-fade (better) is shown for this move
            if res.image is not None and self.progressive and self._node_shown_id != res.id:
                self.canvas.set_edited(res.image, interim=True,
                                       text=f"preview: step {res.step} of {res.steps}")
                self.showing_preview = True
                self._show_latency()
            return
        if res.image is None:
            return
        self.canvas.set_edited(res.image)
        if self._preview_req is not None:
            self._exact_shown = (res.image, self._node_epoch, self._preview_req.edits)
        self.showing_preview = False
        self.messages.clear_error("preview")  # only a preview's own error: others stay to be read
        now = time.perf_counter()
        self.last_latency = now - self._preview_req.sent_at if self._preview_req else None
        if self._preview_req is not None:
            self._paint_clock["exact"] = self._preview_req.sent_at
        self.last_render = res.render_s
        self.previews_shown += 1
        self._show_latency()
        self.previewShown.emit(res.id)

    def _set_rendering(self, at: Optional[tuple]) -> None:
        """A render that takes a while shows its step and can be cancelled (Esc, Cancel);
        ``at``: (step, steps) reached, None when no render is in flight."""
        self._rendering = at
        self._show_latency()
        self._update_job_ui()

    def cancel_render(self) -> bool:
        """Abandon the render in flight: the canvas shows the last exact image again, labelled
        as without the sliders' last change. Returns whether a render was in flight."""
        if not self.render_in_flight:
            return False
        self.worker.cancel_preview()
        self._cancelled_render = self._preview_req.id
        self.shown_preview_id = self._preview_req.id  # nothing is pending any more
        base = self._exact_shown[0] if self._exact_shown is not None and \
            self._exact_shown[1] == self._node_epoch else None
        if base is None and self.traj_info is not None:
            base = self.traj_info.image
        if base is not None:
            self.canvas.set_edited(base, interim=True,
                                   text="render cancelled: without the last slider change (move a slider to render)")
        self.showing_preview = False
        self._paint_clock.clear()
        self.statusBar().showMessage("Render cancelled", 4000)
        self._set_rendering(None)
        return True

    def _show_node_preview(self, key, moved_at: float) -> bool:
        """Put a preview of direction ``key`` at its new scale on the canvas at once, labelled
        as such (the exact image of the request about to be sent replaces it):

        - the cross-fade of its strip images, where a strip made with the current other
          edits is here;
        - else, where a strip of this image made under other edits is here (another slider
          moved since), the last exact image plus what that strip changes between the
          direction's scale in that image and the new one;
        - else nothing: the old image stays."""
        nodes = self._nodes.get(key)
        want = self._strip_context(key)
        if nodes is None or want is None:
            return False
        scale = float(self.library.direction(key)[1].scale)
        if not nodes.covers(scale):
            return False  # a typed scale beyond the strip
        if nodes.context[0] == want[0]:
            img, text = nodes.pixels(scale), "preview"
        else:
            base = self._exact_for(key, want[0])
            if base is None or not nodes.covers(base[1]):
                return False
            img, text = nodes.moved(base[0], base[1], scale), "preview (approximate)"
            self.moved_previews_shown += 1
        self._node_shown_id = self._preview_id + 1  # the id request_preview gives next
        self.canvas.set_edited(img, interim=True, text=text)
        self.showing_preview = True
        self.node_previews_shown += 1
        self._paint_clock["preview"] = moved_at
        self._show_latency()
        return True

    def _exact_for(self, key, ctx) -> Optional[tuple]:
        """(image, scale of ``key`` in it) of the exact image last shown, if it was made of
        this image (``ctx``'s epoch) with the other edits ``ctx`` names; else None."""
        shown = self._exact_shown
        if shown is None:
            return None
        image, epoch, edits = shown
        epoch_now, _item, others = ctx
        if epoch != epoch_now:
            return None
        if _others(edits, key) != others:
            return None
        mine = [e for e in edits if (e.set_id, e.index) == tuple(key)]
        return image, (float(mine[0].scale) if mine else 0.0)

    def _canvas_painted(self) -> None:
        """The canvas drew what was last put on it: the latencies end here."""
        if not self._paint_clock:
            return
        now = time.perf_counter()
        if "preview" in self._paint_clock:
            self.last_preview_latency = now - self._paint_clock["preview"]
        if "exact" in self._paint_clock:
            self.last_exact_latency = now - self._paint_clock["exact"]
        self._paint_clock.clear()
        self._show_latency()

    def _show_latency(self) -> None:
        def ms(v):
            return f"{1000 * v:.0f} ms" if v is not None else "–"

        if self._rendering is not None:
            step, steps = self._rendering
            at = f"step {step} of {steps}" if step else "first step"
            self.preview_label.setText(f"rendering the edit: {at} · Esc cancels")
            return
        text = f"preview {ms(self.last_preview_latency)} · exact {ms(self.last_exact_latency)}"
        if self.last_render is not None:
            text += f" (engine {ms(self.last_render)})"
        self.preview_label.setText(("preview shown · " if self.showing_preview else "") + text)
        self.preview_label.setToolTip("Slider move to preview on the canvas, and to the exact image "
                                      "(the engine's own render time in brackets)")

    def _set_progressive(self, on: bool) -> None:
        self.progressive = bool(on)

    def _sets_checked(self, statuses: dict) -> None:
        self.library.set_statuses(statuses)
        bad = [s.name for s in self.library.sets if s.status == "mismatch"]
        if bad and statuses:
            self.statusBar().showMessage(f"{len(bad)} direction set(s) do not fit this model: "
                                         f"{', '.join(bad[:3])}", 8000)

    def _sync_sliders(self) -> None:
        entries = []
        for s, d in self.library.active():
            ok = s.status != "mismatch"
            method = "noise" if s.h_space == "noise" else s.method  # window and step do not apply
            entries.append(((s.set_id, d.index), self.library.title(s, d), method, d, ok,
                            s.status_text if not ok else ""))
        ts = list(self.traj_info.timesteps) if self.traj_info else []
        self.sliders.sync(entries, ts)

    def _active_changed(self) -> None:
        keys = [(s.set_id, d.index) for s, d in self.library.active()]
        new = [k for k in keys if k not in self._active_keys]
        self._active_keys = set(keys)
        if new:  # a newly ticked direction: its strip is made when idle, so its first drag previews
            self._focus_key = new[-1]
            self._hint_masked(new)
        self._sync_sliders()
        asked = self._preview_req
        if asked is None or _changing(asked.edits) != _changing(self.current_edits()):
            self.request_preview()  # (a direction ticked or unticked at scale 0 changes nothing)
        self._request_strip()  # the other edits of every strip changed

    def _hint_masked(self, keys) -> None:
        """A direction found inside a painted mask changes the whole image unless the edit is kept
        inside the mask: say so where it is ticked, with the button that keeps it inside."""
        keep = self.brush.keep_inside
        if keep.isChecked():
            return
        for key in keys:
            found = self.library.direction(key)
            if found is not None and found[0].method == "jacobian" and (found[0].params or {}).get("mask"):
                self.show_info(f"'{found[1].label}' was found inside a mask, but applied to h it changes the "
                               "whole image; keep the edit inside the mask to confine it",
                               level="warning", action=("Keep inside the mask", lambda: keep.setChecked(True)))
                return

    def _slider_changed(self, key) -> None:
        moved_at = time.perf_counter()
        found = self.library.direction(key)
        row = self.sliders.row(key)
        if found is None or row is None:
            return
        d = found[1]
        d.scale = row.scale()
        d.asymmetric = row.asymmetric()
        d.window = row.window()
        d.at_timestep = row.at_timestep()
        d.range = row.range()
        self._mark_dirty()
        key = tuple(key)
        self.history.note(merge_key=key)
        self._focus_key = key
        if self.traj_info is not None:
            shown = self._show_node_preview(key, moved_at)  # at once; the exact image follows
            if self._running is not None:  # the exact image waits for the running job: say so
                wait = f"the exact image after '{self._job_name}' (Esc cancels it)"
                self.canvas.mark_pending(f"{self.canvas.info_text}: {wait}" if shown else f"edit pending: {wait}")
        self.request_preview(moved_at)
        self._request_strip()  # other strips' edits (or this one's window, range ...) changed

    def _restore_library(self, sets) -> None:
        """Undo or redo: the library (and the sliders made from it) as in ``sets``."""
        self.sliders.sync([], [])  # rows are made again from the restored states
        self.library.replace_all(sets)
        self._mark_dirty()

    def _forget_removed_sets(self) -> None:
        """Let the worker free the tensors of sets removed from the library (without this
        every import or discovery kept its tensors for the life of the window); a set that
        an undo step can bring back is kept."""
        current = {s.set_id for s in self.library.sets} | self.history.set_ids()
        gone = self._known_sets - current
        self._known_sets = current
        if gone and not self._closing:
            self.submit(J.ForgetSets(tuple(sorted(gone))), lambda res: None)

    def reset_sliders(self) -> None:
        for row in self.sliders.ordered_rows():
            row.blockSignals(True)
            row.set_scale(0.0)
            row.blockSignals(False)
        for _s, d in self.library.active():
            d.scale = 0.0
        self._mark_dirty()
        self.request_preview()
        self._request_strip()

    def slider_rows(self):
        return self.sliders.ordered_rows()

    def _selection_moved(self, sel) -> None:
        if sel is None:
            self.plots.show_set(None)
            self._strip_key = None
            self._strip_shown = None
            self.library.strip.clear("Select a direction to see it at several scales.")
            return
        set_id, index = sel
        s = self.library.find_set(set_id)
        self.plots.show_set(s, index)
        if index is None and s is not None and s.directions:
            index = s.directions[0].index
        self._strip_key = (set_id, index) if index is not None else None
        self._request_strip()

    def _strip_context(self, key) -> Optional[tuple]:
        """((epoch, item, others), scales) of direction ``key``'s strip as it would be made now:
        with the other active edits (``others``), so that its images are the real edit at its
        node scales; None where no strip can be made."""
        found = self.library.direction(key) if key is not None and self.traj_info is not None else None
        if found is None or found[0].status == "mismatch":
            return None
        s, d = found
        item = EditItem(s.set_id, d.index, 1.0, tuple(d.window) if d.window else None, d.at_timestep,
                        asymmetric=d.asymmetric)
        return (self._node_epoch, item, _others(self.current_edits(), key)), \
            tuple(round(f * d.range, 6) for f in STRIP_SCALES)

    def _strip_cached(self, key, want) -> bool:
        nodes = self._nodes.get(key)
        return nodes is not None and nodes.context == want

    def _strip_asked(self, key, want) -> bool:
        return self._strip_pending is not None and self._strip_pending[1:] == (key, *want)

    def _send_strip(self, key, want) -> None:
        (epoch, item, others), scales = want
        self._strip_pending = (self._strip_id, key, *want)
        self._strip_sent_at = time.perf_counter()  # (its note waits STRIP_NOTE_AFTER_S)
        self.worker.request_strip(StripRequest(self._strip_id, item, scales, others))

    def _request_focus_strip(self) -> bool:
        """Ask (at the lowest priority) for the strip of the direction last moved or ticked,
        unless it is here: its images make that slider's instant previews. Returns whether
        that strip is on its way (asked now or before)."""
        self._nodes = {k: v for k, v in self._nodes.items()  # drop strips of an older image
                       if v.context[0][0] == self._node_epoch and self.library.direction(k) is not None}
        key = self._focus_key
        active = {(s.set_id, d.index) for s, d in self.library.active()}
        if key is None or key == self._strip_key or key not in active:
            return False
        want = self._strip_context(key)
        if want is None or self._strip_cached(key, want):
            return False
        if not self._strip_asked(key, want):
            self._strip_id += 1
            self._send_strip(key, want)
        return True

    def _request_strip(self) -> None:
        """Ask for the strips that are missing: first the focus direction's (its slider's
        instant preview, see :meth:`_request_focus_strip`), then the selected direction's
        (the library shows it)."""
        if self._request_focus_strip():
            return
        key = self._strip_key
        if key is None or self.traj_info is None:
            return
        found = self.library.direction(key)
        if found is None:
            return
        s, d = found
        if s.status == "mismatch":
            self._strip_shown = None
            self.library.strip.clear(f"Does not fit: {s.status_text}")
            return
        want = self._strip_context(key)
        if self._strip_cached(key, want):  # made already: show it
            if self._strip_shown != (key, *want):
                nodes = self._nodes[key]
                self.library.strip.show_images(list(nodes.images), want[1])
                self._strip_shown = (key, *want)
            return
        if self._strip_asked(key, want):
            return
        self._strip_id += 1
        self.library.strip.mark_stale()  # greyed with "updating…" until the new strip comes
        self._send_strip(key, want)

    def _strip_progress(self, strip_id: int, done: int, total: int) -> None:
        """How far the strip being made is: on its slider's row (the instant preview it makes)."""
        asked = self._strip_pending
        if asked is None or asked[0] != strip_id:
            return
        if time.perf_counter() - self._strip_sent_at < STRIP_NOTE_AFTER_S and done < total / 2:
            return  # a strip made in a moment needs no note (it would only flicker)
        self._show_strip_progress(asked[1], done / total if total else None)

    def _show_strip_progress(self, key, fraction: Optional[float]) -> None:
        shown = self._strip_progress_key
        if shown is not None and shown != key:
            row = self.sliders.row(shown)
            if row is not None:
                row.set_preview_progress(None)
        row = self.sliders.row(key) if key is not None else None
        if row is not None:
            row.set_preview_progress(fraction if fraction is not None and fraction < 1 else None)
        self._strip_progress_key = key

    def _strip_ready(self, res) -> None:
        asked = self._strip_pending
        if asked is None or res.id != asked[0]:
            return
        self._strip_pending = None
        _id, key, ctx, scales = asked
        self._show_strip_progress(key, None)
        if res.error:
            if key == self._strip_key:
                self._strip_shown = None
                self.library.strip.clear(f"strip failed: {res.error}")
            return  # not asked again until the user changes something
        if self._strip_context(key) == (ctx, scales):  # still the current edit: keep it for previews
            self._nodes[key] = NodeImages.from_strip(res.scales, res.images, (ctx, scales))
            if key == self._strip_key:
                self.library.strip.show_images(res.images, res.scales)
                self._strip_shown = (key, ctx, scales)
        self._request_strip()  # the next missing one

    def _strip_clicked(self, scale: float) -> None:
        key = self._strip_key
        if key is None:
            return
        self.library.set_active(key, True)
        row = self.sliders.row(key)
        if row is not None:
            row.set_scale(scale)

    def _region_changed(self, *_args) -> None:
        """Send the worker the mask that edits must stay inside (or none), then redraw."""
        keep = self.brush.keep_inside.isChecked()
        mask = self.mask.array.copy() if keep else None
        self._node_epoch += 1  # strips made in the old region are no previews
        if keep and not mask.any():
            self.statusBar().showMessage("The mask is empty: edits apply to the whole image until "
                                         "you paint a region", 8000)
        self.submit(J.SetRegion(mask, self.brush.free_steps.value()), lambda res: None)
        self._mark_dirty()
        self.request_preview()
        self._request_strip()

    def _region_input_changed(self, *_args) -> None:
        """The mask or the free steps changed: resend the region if one is in force."""
        if self.brush.keep_inside.isChecked():
            self._region_changed()
