"""The domain interface: a user's own segmenter and classifier, in the user-facing formats
(TorchScript + a JSON list of names), built and saved by the test, used from the engine and
the command line; the engine without a domain; the toy faces as one domain."""
import json

import numpy as np
import pytest
import torch

from hspace_studio.cli import main
from hspace_studio.core.errors import HSpaceError
from hspace_studio.engine import DirectionSet, EditSpec, edit, load_model, sample
from hspace_studio.engine.domain import GENERIC, active_domain, fit_terms, use_domain
from hspace_studio.engine.images import load_image, read_recipe
from hspace_studio.engine.segmenter import load_segmenter, split_region_spec


class Brightness(torch.nn.Module):
    """Per-pixel logits of two parts: 'dark' and 'bright' (by the mean of the channels)."""

    def forward(self, x):
        m = x.mean(1, keepdim=True) * 10
        return torch.cat([-m, m], 1)


class Scores(torch.nn.Module):
    """Two attribute logits per image: brightness and redness."""

    def forward(self, x):
        return torch.stack([x.mean((1, 2, 3)) * 8, (x[:, 0] - x[:, 1:].mean(1)).mean((1, 2)) * 8], 1)


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    torch.jit.save(torch.jit.script(Brightness()), str(d / "parser.pt"))
    (d / "parser.json").write_text(json.dumps(["dark", "bright"]))
    torch.jit.save(torch.jit.script(Scores()), str(d / "clf.pt"))
    (d / "clf.json").write_text(json.dumps({"attributes": ["bright", "red"]}))
    return d


def test_a_torchscript_segmenter_finds_its_parts(user_files):
    seg = load_segmenter(str(user_files / "parser.pt"))
    assert seg.parts == ["dark", "bright"]
    img = torch.full((1, 3, 8, 8), -0.5)
    img[..., :, 4:] = 0.5
    mask = seg.part_mask(img, ["bright"])
    assert mask[:, 4:].all() and not mask[:, :4].any()
    with pytest.raises(ValueError, match="no part hair"):
        seg.part_mask(img, ["hair"])
    (user_files / "lonely.pt").write_bytes((user_files / "parser.pt").read_bytes())
    with pytest.raises(HSpaceError, match="lonely.json"):
        load_segmenter(str(user_files / "lonely.pt"))
    assert split_region_spec(f"{user_files}/parser.pt:bright,dark") == (f"{user_files}/parser.pt", ["bright", "dark"])


def test_edit_region_from_a_users_segmenter(tiny_model_dir, tiny_model, user_files, tmp_path):
    """``edit --region-from parser.pt:bright`` keeps the change where the user's segmenter
    finds bright pixels of the unedited image, as a direct engine edit with that region."""
    from hspace_studio.engine.sampler import Region

    traj = sample(tiny_model, [3], steps=4)[0]
    g = torch.Generator().manual_seed(0)
    ds = DirectionSet(delta_h=torch.randn((1, *traj.hs.shape), generator=g) * traj.hs.std(),
                      timesteps=traj.timesteps, fingerprint=tiny_model.fingerprint, h_space="after", method="pca")
    ds.save(tmp_path / "d.safetensors")
    out = tmp_path / "e.png"
    assert main(["edit", "--model", str(tiny_model_dir), "--seed", "3", "--steps", "4",
                 "--direction", str(tmp_path / "d.safetensors"), "--scale", "2",
                 "--region-from", f"{user_files / 'parser.pt'}:bright", "--grow", "0", "--free-steps", "0",
                 "--out", str(out)]) == 0
    bright = (tiny_model.to_pixels(traj.x_0[None]).clamp(-1, 1).mean(1) > 0)[0].float()
    assert 0 < float(bright.mean()) < 1  # the region is a real part of the image
    want = edit(tiny_model, traj, [EditSpec(ds.delta_h[0], 2.0)], region=Region(bright, 0))
    got, _ = load_image(out, tiny_model.image_size)
    want8 = ((want.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1
    assert (got - want8).abs().max() < 1.5 / 255
    rec = read_recipe(out)
    assert rec["region"]["segmenter"] == str(user_files / "parser.pt") and rec["region"]["parts"] == ["bright"]
    unmasked = edit(tiny_model, traj, [EditSpec(ds.delta_h[0], 2.0)])
    outside = bright == 0
    assert torch.equal(want[:, outside], traj.x_0[:, outside]) and not torch.equal(unmasked, want)


def test_supervised_with_a_users_torchscript_classifier(tiny_model_dir, user_files, tmp_path):
    out = tmp_path / "bright.safetensors"
    assert main(["supervised", "--model", str(tiny_model_dir), "--classifier", str(user_files / "clf.pt"),
                 "--attributes", str(user_files / "clf.json"), "--attribute", "bright", "--index-size", "8",
                 "--examples", "2", "--steps", "2", "--index", str(tmp_path / "idx.json"), "--out", str(out)]) == 0
    ds = DirectionSet.load(out)
    assert ds.params["attribute"] == "bright" and "torchscript:clf.pt" in json.dumps(ds.params)


def test_the_engine_without_a_domain_asks_for_files(tiny_model):
    from hspace_studio.engine.annotate import ClassifierUsageError, load_classifier

    old = use_domain(GENERIC)
    try:
        with pytest.raises(ClassifierUsageError, match="no default classifier"):
            load_classifier(None)
        with pytest.raises(HSpaceError, match="no default segmenter"):
            load_segmenter(None)
        with pytest.raises(HSpaceError, match="no fit term part-check"):
            fit_terms("smiling", {"part-check": 1.0})
        assert fit_terms("smiling", {"part-check": 0.0}) == (None, 0.0, None)
    finally:
        use_domain(old)


def test_the_toy_faces_are_a_domain():
    d = active_domain()
    assert d.name == "toyfaces" and set(d.terms) == {"part-check", "hair-colour", "outside-hair"}
    seg = load_segmenter("default")
    assert "hair" in seg.parts and "mouth" in seg.parts
    _, weight, name = fit_terms("smiling", {"part-check": 2.0})
    assert weight == 2.0 and "part check" in name
    with pytest.raises(ValueError, match="hair colours"):
        fit_terms("smiling", {"hair-colour": 1.0})


def test_engine_imports_no_domain_and_no_qt():
    """In a fresh interpreter, importing the whole engine loads neither the toy faces nor Qt."""
    import subprocess
    import sys

    code = ("import sys, pkgutil, importlib, hspace_studio.engine as e\n"
            "for m in pkgutil.walk_packages(e.__path__, 'hspace_studio.engine.'):\n"
            "    importlib.import_module(m.name)\n"
            "bad = [m for m in sys.modules if m.startswith(('hspace_studio.toyfaces', 'PySide6', 'hspace_studio.gui'))]\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
