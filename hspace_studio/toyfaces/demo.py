"""``hspace-studio demo``: the paper's figure types on the default toyfaces model.

Writes captioned PNGs to a folder: PCA strips, Jacobian edits inside eye / mouth / brow
masks from the shipped segmenter, supervised edits (smiling, eyeglasses, hair colour),
a disentangled edit, and an inverted-and-edited held-out generator image; plus
``captions.md``. Qt-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..core.atomic import write_text
from ..core.progress import CancelToken
from ..engine.images import grid, save_png, to_pil
from ..engine.sampler import EditSpec, edit_batch, sample

CELL = 128  # pixels per image in the figures (nearest-neighbour upscaled)


@dataclass
class DemoSettings:
    steps: int = 10
    pca_samples: int = 300
    index_size: int = 400
    examples: int = 40
    jacobian_k: int = 2
    seeds: Sequence[int] = (3, 14, 27)

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(steps=5, pca_samples=24, index_size=32, examples=6, jacobian_k=1, seeds=(3,))


def _up(img: Image.Image) -> Image.Image:
    return img.resize((CELL, CELL), Image.NEAREST)


def _caption(img: Image.Image, text: str, row_labels: Optional[List[str]] = None) -> Image.Image:
    lines = text.split("\n")
    pad_top = 8 + 14 * len(lines)
    left = 0 if not row_labels else 8 + 7 * max(len(r) for r in row_labels)
    out = Image.new("RGB", (img.width + left + 8, img.height + pad_top + 8), (255, 255, 255))
    d = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        d.text((8, 4 + 14 * i), line, fill=(0, 0, 0))
    out.paste(img, (left, pad_top))
    if row_labels:
        h = (img.height + 2) // len(row_labels)
        for i, r in enumerate(row_labels):
            d.text((6, pad_top + i * h + h // 2 - 6), r, fill=(60, 60, 60))
    return out


class Demo:
    def __init__(self, model, out: Path, settings: DemoSettings, progress=None,
                 cancel: Optional[CancelToken] = None, log=print, h_space: str = "after"):
        self.model, self.out, self.s, self.h_space = model, Path(out), settings, h_space
        self.progress, self.cancel, self.log = progress, cancel, log
        self.captions: List[str] = []
        self.out.mkdir(parents=True, exist_ok=True)

    # -- helpers ------------------------------------------------------------------------
    def _pil(self, x0: torch.Tensor) -> Image.Image:
        return _up(to_pil(self.model.to_pixels(x0[None])[0]))

    def _save(self, name: str, img: Image.Image, caption: str, recipe: dict) -> None:
        save_png(self.out / name, img, recipe)
        self.captions.append(f"## {name}\n\n{caption}\n")
        self.log(f"wrote {self.out / name}")

    def _trajs(self, seeds):
        return sample(self.model, list(seeds), steps=self.s.steps, eta=1.0, h_space=self.h_space,
                      batch_size=len(seeds), cancel=self.cancel)

    def _strip_row(self, traj, delta, scales) -> List[Image.Image]:
        res = edit_batch(self.model, traj, [[EditSpec(delta, float(s))] for s in scales],
                         cancel=self.cancel)
        return [self._pil(x) for x in res.x_0]

    # -- figures ------------------------------------------------------------------------
    def pca(self):
        from ..engine.discover.pca import pca_directions

        self.log(f"PCA over {self.s.pca_samples} samples ...")
        res = pca_directions(self.model, n_samples=self.s.pca_samples, components=4,
                             mode="per-step", steps=self.s.steps, eta=1.0, h_space=self.h_space,
                             seed_start=100_000,
                             progress=self.progress, cancel=self.cancel)
        ds = res.directions
        ds.save(self.out / "pca.safetensors")
        traj = self._trajs(self.s.seeds[:1])[0]
        scales = [-3, -1.5, 0, 1.5, 3]
        rows, labels = [], []
        for k in range(len(ds)):
            rows += self._strip_row(traj, ds.delta_h[k], scales)
            ev = float(np.mean(res.explained_variance_ratio[k]))
            labels.append(f"PC{k} {ev:.0%}")
        img = _caption(grid(rows, cols=len(scales)),
                       f"PCA (per-step, {self.s.pca_samples} samples): PCs 0-{len(ds) - 1} at "
                       f"{', '.join(str(s) for s in scales)} sigma", labels)
        self._save("pca_strips.png", img, "Top principal components of h, applied at "
                   f"{scales} standard deviations (rows: PC, mean explained variance).",
                   {"figure": "pca", "samples": self.s.pca_samples, "scales": scales})
        return ds

    def jacobian(self):
        from ..engine.discover.jacobian import jacobian_directions
        from .edit_metrics import segment
        from .nets import load_segmenter
        from .quality import SEGMENTER_DIR

        seg, parts = load_segmenter(SEGMENTER_DIR)
        traj = self._trajs(self.s.seeds[:1])[0]
        img0 = self.model.to_pixels(traj.x_0[None])[0].cpu()
        rows, labels, sets = [], [], {}
        at = max(0, self.s.steps // 2 - 1)
        for name, part_list in (("eyes", ["left_eye", "right_eye"]), ("mouth", ["mouth"]),
                                ("brows", ["brows"])):
            mask = segment(img0, seg, part_list, parts)
            self.log(f"Jacobian inside the {name} mask ({int(mask.sum())} px) ...")
            # only step `at` is needed: its vector is applied at every step
            res = jacobian_directions(self.model, traj, k=self.s.jacobian_k, mask=mask,
                                      steps_subset=[at], progress=self.progress, cancel=self.cancel)
            ds = res.directions.for_timesteps(traj.timesteps)
            ds.save(self.out / f"jacobian_{name}.safetensors")
            sets[name] = (ds, mask)
            overlay = to_pil(img0).copy()
            a = np.asarray(overlay).copy()
            a[mask] = (0.5 * a[mask] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
            row = [self._pil(traj.x_0), _up(Image.fromarray(a))]
            scale = _jacobian_scale(traj, ds)
            for k in range(len(ds)):
                d = ds.steps_delta(k, at_step=at)
                row += self._strip_row(traj, d, [-scale, scale])
            rows += row
            labels.append(name)
        cols = 2 + 2 * self.s.jacobian_k
        img = _caption(grid(rows, cols=cols),
                       f"Jacobian directions inside segmenter masks: original, mask, then each "
                       f"vector at -/+ scale (step {at}'s vector at every step)", labels)
        self._save("jacobian_masks.png", img, "Top singular vectors of d eps / d h restricted to "
                   "the eye, mouth and brow masks, applied the paper's way (one step's vector at "
                   "every step).", {"figure": "jacobian", "at_step": at})
        return sets

    def supervised(self):
        from ..engine.annotate import load_classifier
        from ..engine.discover.supervised import build_index, supervised_directions

        clf = load_classifier("toyfaces")
        self.log(f"annotating {self.s.index_size} samples ...")
        index = build_index(self.model, clf, self.s.index_size, path=self.out / "index.json",
                            steps=self.s.steps, eta=1.0, h_space=self.h_space, seed_start=200_000,
                            progress=self.progress, cancel=self.cancel)
        attrs = ["smiling", "eyeglasses", "blond_hair"]
        res = supervised_directions(self.model, index, attrs, examples=self.s.examples,
                                    progress=self.progress, cancel=self.cancel)
        ds = res.directions
        ds.save(self.out / "supervised.safetensors")
        trajs = self._trajs(self.s.seeds)
        scales = [-1.0, -0.5, 0, 0.5, 1.0]
        rows, labels = [], []
        for k, a in enumerate(attrs):
            rows += self._strip_row(trajs[0], ds.delta_h[k], scales)
            labels.append(a)
        img = _caption(grid(rows, cols=len(scales)),
                       f"Supervised directions ({self.s.examples} top vs bottom of "
                       f"{self.s.index_size} annotated samples) at {scales}", labels)
        self._save("supervised.png", img, "Mean h of the top-scored minus the bottom-scored "
                   "samples for each attribute; scale 1 moves from the negative to the positive mean.",
                   {"figure": "supervised", "attributes": attrs, "scales": scales})
        # disentangled: beard is coupled with hair style in the generator (beards only on short hair)
        plain = supervised_directions(self.model, index, "beard", examples=self.s.examples,
                                      cancel=self.cancel).directions
        dis = supervised_directions(self.model, index, "beard", examples=self.s.examples,
                                    against=["long_hair", "bald"], cancel=self.cancel).directions
        dis.save(self.out / "beard_disentangled.safetensors")
        rows = []
        for t in trajs[:2]:
            rows += [self._pil(t.x_0)] + self._strip_row(t, plain.delta_h[0], [1.0]) + \
                self._strip_row(t, dis.delta_h[0], [1.0])
        img = _caption(grid(rows, cols=3), "Disentangling: original | beard | beard ⟂ long_hair, bald\n"
                       "(beards only occur with short hair, so the plain direction also cuts hair)")
        self._save("disentangled.png", img, "The beard direction carries the hair style it is "
                   "coupled with; projecting out the long-hair and bald directions keeps the hair.",
                   {"figure": "disentangled"})
        return ds, index

    def inversion(self, supervised_ds):
        from ..engine.inversion import invert
        from .generator import render

        rgb, _, _ = render(987_654, self.model.image_size[0])
        img = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1
        inv = invert(self.model, img, steps=self.s.steps, eta=1.0, h_space=self.h_space, cancel=self.cancel,
                     origin={"image": "toyfaces seed 987654"})
        t = inv.trajectory
        ds = supervised_ds.for_timesteps(t.timesteps)
        row = [_up(to_pil(img)), self._pil(t.x_0)]
        for k in range(len(ds)):
            row += self._strip_row(t, ds.delta_h[k], [1.0])
        labels = ", ".join(ds.labels)
        out = _caption(grid(row, cols=len(row)),
                       f"Held-out generator image: input | edit-friendly inversion "
                       f"({inv.psnr:.0f} dB) | {labels} at scale 1" if np.isfinite(inv.psnr) else
                       f"Held-out generator image: input | exact inversion | {labels} at scale 1")
        self._save("inversion_edit.png", out, "A generator image the model never saw, inverted "
                   "with edit-friendly DDPM inversion and edited with the supervised directions.",
                   {"figure": "inversion", "psnr": inv.psnr})

    def run(self):
        self.pca()
        self.jacobian()
        ds, _ = self.supervised()
        self.inversion(ds)
        write_text(self.out / "captions.md", "# hspace-studio demo\n\n" + "\n".join(self.captions))


def _jacobian_scale(traj, ds) -> float:
    """A visible edit: a multiple of the typical norm of h (Jacobian vectors are unit)."""
    return float(0.5 * traj.hs.flatten(1).norm(dim=1).mean())
