"""Tiny random models of every family the app supports, as diffusers folders (for the
packaged app's smoke test): ``python packaging/tiny_families.py OUT`` writes OUT/<family>
and prints one line per family: ``<family> <folder> <prompt or ->``."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tiny_flow_models import (save_dit_model, save_flux_model, save_pixart_model,  # noqa: E402
                                    save_sd3_model, save_zimage_model)
from tests.tiny_models import save_latent_model, save_pixel_model, save_sd_model, save_sdxl_model  # noqa: E402

FAMILIES = {
    "pixel-unet": (lambda f: save_pixel_model(f, "a"), None),
    "latent-unet": (save_latent_model, None),
    "sd": (save_sd_model, "a face"),
    "sdxl": (save_sdxl_model, "a face"),
    "sd3": (save_sd3_model, "a face"),
    "flux": (save_flux_model, "a face"),
    "pixart-sigma": (save_pixart_model, "a face"),
    "dit": (save_dit_model, "1"),
    "z-image": (save_zimage_model, "a face"),
}


def main(out: str) -> None:
    root = Path(out)
    for name, (save, prompt) in FAMILIES.items():
        folder = save(root / name) or (root / name)
        print(name, folder, prompt or "-")


if __name__ == "__main__":
    main(sys.argv[1])
