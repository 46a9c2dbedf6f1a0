"""Where an image comes from, the same for the command line and the app: a seed, an inverted
image, a saved trajectory; and where a supervised index of samples is cached.
``cli/`` calls these with its options, the handlers of ``handlers/source.py`` with a job's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def sample_seed(model, seed: int, steps: int, eta, h_space: str, progress=None, cancel=None,
                keep_x0s: bool = False):
    """The trajectory of ``seed`` (``steps`` steps, ``eta`` a number, a list or a schedule
    spec) under the model's prompt (``keep_x0s``: with each step's predicted x_0)."""
    from ..engine.sampler import sample

    return sample(model, [int(seed)], steps=int(steps), eta=eta, h_space=h_space,
                  progress=progress, cancel=cancel, keep_x0s=keep_x0s)[0]


def invert_image(model, path, steps: int, eta, h_space: str, seed: int = 0, progress=None, cancel=None,
                 on_note=None):
    """``(Inversion, note)``: the image file ``path`` at the model's size (``note`` says how it
    was fitted, or is empty; ``on_note(note)`` hears it before the inversion starts) inverted
    (edit-friendly for eta > 0, DDIM for eta 0; ``seed`` is the inversion noise's)."""
    from ..engine.images import load_image
    from ..engine.inversion import invert

    img, note = load_image(path, model.image_size)
    if note and on_note is not None:
        on_note(note)
    inv = invert(model, img, steps=int(steps), eta=eta, h_space=h_space, seed=int(seed), progress=progress,
                 cancel=cancel, origin={"image": str(path)})
    return inv, note


def open_trajectory(model, path, h_space: str, name: Optional[str] = None, h_shape=None):
    """The trajectory file ``path``, refused (with ``name``, default ``path``, in the message)
    unless it was made by this model at ``h_space`` (and, given, with h of ``h_shape``).
    Editing or decoding it conditions the model on the prompt it records."""
    from ..engine.trajectory import Trajectory

    traj = Trajectory.load(path)
    traj.check_model(model.fingerprint, h_space, str(path) if name is None else name,
                     sample_shape=model.sample_shape, h_shape=h_shape)
    return traj


def index_file(folder, model, classifier, steps: int, eta, h_space: str) -> Path:
    """Where the supervised index of ``classifier`` over the model's samples (``steps``,
    ``eta``, ``h_space``, its prompt) is cached in ``folder``: ``hspace-index-<recipe>.json``,
    so that another model, classifier or setting never reads it."""
    from ..engine.discover.supervised import index_recipe, recipe_key

    key = recipe_key(index_recipe(model, classifier, int(steps), eta, h_space))
    return Path(folder) / f"hspace-index-{key}.json"
