"""Measures of a toyfaces model against the generator's ground truth.

Qt-free helpers used by ``hspace-studio evaluate``: Frechet distance in the shipped
classifier's feature space, attribute frequencies, inversion PSNR.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .generator import ATTRIBUTE_NAMES, render_batch

RESOURCES = Path(__file__).resolve().parent.parent.parent / "resources"
CLASSIFIER_DIR = RESOURCES / "toyfaces-classifier"
SEGMENTER_DIR = RESOURCES / "toyfaces-segmenter"
# an independently trained classifier (other initialisation and images): it checks that
# directions fitted against the shipped classifier change the face, not that classifier alone
REFEREE_DIR = RESOURCES / "toyfaces-referee"
HELD_OUT = 0  # generator seeds below 1,000,000 are never used for training


def load_shipped_classifier():
    from .nets import load_classifier

    return load_classifier(CLASSIFIER_DIR)


def load_referee():
    from .nets import load_classifier

    return load_classifier(REFEREE_DIR)


@torch.no_grad()
def classify(clf, images: torch.Tensor, batch: int = 256):
    """(features (N, D), probabilities (N, A)) for images in [-1, 1] (clamped)."""
    feats, probs = [], []
    for i in range(0, images.shape[0], batch):
        x = images[i:i + batch].clamp(-1, 1).float()
        f = clf.features(x)
        feats.append(f)
        probs.append(torch.sigmoid(clf.head(f)))
    return torch.cat(feats), torch.cat(probs)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows = samples).

    tr(sqrt(S1 S2)) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix S1^(1/2) S2 S1^(1/2), which stays stable when features with
    zero variance make the covariances singular.
    """
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(r1 @ s2 @ r1)
    tr_covmean = np.sqrt(np.clip(lam, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def generator_images(seeds: Sequence[int], size: int = 64) -> torch.Tensor:
    x, _, _ = render_batch(seeds, size)
    return torch.from_numpy(x)


def model_images(model, seeds: Sequence[int], steps: int, eta=1.0, batch: int = 50,
                 progress=None, cancel=None) -> torch.Tensor:
    from ..engine.sampler import sample

    out = []
    for i in range(0, len(seeds), batch):
        trajs = sample(model, seeds[i:i + batch], steps=steps, eta=eta, batch_size=batch,
                       keep_chain=False, progress=progress, cancel=cancel)
        x0 = torch.stack([t.x_0 for t in trajs])
        out.append(model.to_pixels(x0).cpu())
    return torch.cat(out)


def model_quality(model, clf, n: int = 1000, steps_list=(10, 50), eta=1.0,
                  progress=None, cancel=None) -> dict:
    """FD of model samples vs generator images, the generator-vs-generator noise floor,
    x_0 range without clipping, and attribute frequencies."""
    g1 = generator_images(range(HELD_OUT, HELD_OUT + n))
    g2 = generator_images(range(HELD_OUT + 500_000, HELD_OUT + 500_000 + n))
    f1, p1 = classify(clf, g1)
    f2, _ = classify(clf, g2)
    res = {"n": n, "noise_floor": frechet_distance(f1.numpy(), f2.numpy()),
           "generator_freq": dict(zip(ATTRIBUTE_NAMES, (p1 > 0.5).float().mean(0).tolist())),
           "steps": {}}
    for steps in steps_list:
        imgs = model_images(model, list(range(n)), steps, eta, progress=progress, cancel=cancel)
        fm, pm = classify(clf, imgs)
        res["steps"][steps] = {
            "fd": frechet_distance(fm.numpy(), f1.numpy()),
            "x0_abs_max": float(imgs.abs().max()),
            "x0_out_of_range": float((imgs.abs() > 1.05).float().mean()),
            "freq": dict(zip(ATTRIBUTE_NAMES, (pm > 0.5).float().mean(0).tolist())),
        }
    return res


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * float(np.log10(1.0 / mse))


def inversion_quality(model, seeds: Sequence[int], steps: int = 10, progress=None, cancel=None) -> dict:
    """Mean PSNR of edit-friendly (eta 1) and DDIM (eta 0) reconstructions of held-out
    generator images (8-bit quantised, as a user's PNG would be)."""
    from ..engine.inversion import invert

    imgs = generator_images(seeds)
    imgs = ((imgs + 1) * 127.5).round() / 127.5 - 1
    out = {}
    for name, eta in (("edit-friendly", 1.0), ("ddim", 0.0)):
        vals = []
        for x in imgs:
            inv = invert(model, x, steps=steps, eta=eta, progress=progress, cancel=cancel)
            vals.append(min(inv.psnr, 100.0))
        out[name] = float(np.mean(vals))
    return out


def format_table(rows, header) -> str:
    cols = [header] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(header), line(["-" * x for x in w])] + [line(r) for r in cols[1:]])
