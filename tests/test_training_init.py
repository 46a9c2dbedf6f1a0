"""The DDPM training script can start from a shipped model folder (--init)."""
import json

import torch


def test_init_from_a_model_folder(tmp_path):
    from diffusers import UNet2DModel

    from hspace_studio.training import ddpm

    first = tmp_path / "first"
    ddpm.main(["--out", str(first), "--checkpoint", str(tmp_path / "ck1"), "--max-steps", "2",
               "--batch", "2", "--size", "16", "--channels", "16,16,32,32", "--threads", "1", "--no-bf16"])
    assert json.loads((first / "training.json").read_text())["step"] == 2
    # a new checkpoint folder started from `first`: continues its step count and its weights
    second = tmp_path / "second"
    ddpm.main(["--out", str(second), "--checkpoint", str(tmp_path / "ck2"), "--max-steps", "2",
               "--batch", "2", "--size", "16", "--channels", "16,16,32,32", "--threads", "1", "--no-bf16",
               "--init", str(first)])
    # max-steps 2 is already reached: nothing trained, the weights are first's
    assert json.loads((second / "training.json").read_text())["step"] == 2
    a = UNet2DModel.from_pretrained(first).state_dict()
    b = UNet2DModel.from_pretrained(second).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
