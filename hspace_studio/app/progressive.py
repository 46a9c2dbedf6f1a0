"""What a slow render shows before its exact image, and how a background strip yields to it.

- **Step previews.** While an edit renders, each step's predicted x_0 is known. Shown as it
  is, an early step's prediction is a blurred stand-in for the image. Shown instead is the
  exact image on the canvas plus what the edit changes in that step's prediction,
  ``x0_shown + (pred_new[i] - pred_shown[i])``, where ``pred_shown`` are the predictions
  of the chain that made the shown image (the image's own cached chain, or the last
  render's): a labelled change after the first edited step, i.e. one network call, that
  becomes the exact image at the last step.
- **Strip chunks.** A strip (one direction at five scales) is rendered a few chains at a
  time, so that one of its network calls takes no longer than :data:`STRIP_CALL_BUDGET_S`
  (one chain at a time on a real-size model): a slider move waits at most that long for
  the worker. Finished images are kept, so a pre-empted strip goes on where it stopped.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

STRIP_CALL_BUDGET_S = 0.25  # the longest a strip's batched network call may take


def shown_chain(traj, last) -> Tuple[object, Optional[object]]:
    """``(x_0, preds)`` of the exact image the canvas shows: ``traj``'s own, or ``last``, the
    last render ``(edits, x_0, preds of its steps from its first edited step on or None)``;
    ``preds`` (T, C, H, W) is None where the chain's predictions are not known."""
    import torch

    if last is None or not last[0]:
        return (traj.x_0 if last is None else last[1]), traj.x0s
    _key, x0, tail = last
    if tail is None:
        return x0, None
    start = traj.steps - int(tail.shape[0])
    if start == 0:
        return x0, tail
    if traj.x0s is None:
        return x0, None
    return x0, torch.cat([traj.x0s[:start], tail])


def step_preview(shown, i: int, pred_x0):
    """The preview of step ``i`` whose prediction is ``pred_x0`` (C, H, W): the shown image plus
    the change of that step's prediction (see the module docstring); the prediction itself
    where the shown chain's are not known."""
    x0, preds = shown
    if preds is None or not 0 <= i < preds.shape[0]:
        return pred_x0
    return x0.to(pred_x0.device) + (pred_x0 - preds[i].to(pred_x0.device))


def strip_chunk(call_seconds: Optional[float], n: int, budget: float = STRIP_CALL_BUDGET_S) -> int:
    """How many of a strip's ``n`` chains run in one batch: as many as fit one network call of
    ``budget`` seconds, where one chain's call took ``call_seconds`` (one when not known)."""
    if not call_seconds or call_seconds <= 0:
        return 1
    return max(1, min(int(n), int(budget / call_seconds)))


def chunks(items: Sequence, size: int):
    size = max(1, int(size))
    return [list(items[k:k + size]) for k in range(0, len(items), size)]
