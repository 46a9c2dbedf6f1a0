"""Distilling a guided many-step sampler into the few-step chain (training.distill)."""
import json

import torch

from tests.tiny_models import tiny_unet


def _acs():
    from hspace_studio.training.ddpm import build_scheduler

    return build_scheduler().alphas_cumprod.float()


def test_the_target_of_a_one_step_teacher_is_its_own_output():
    """The v whose single DDIM step lands where the teacher's single step did is the teacher's v."""
    from hspace_studio.training.distill import _abs, distilled_v_target, teacher_walk

    acs = _acs()
    m = tiny_unet("a").eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 16, 16, generator=g)
    grids = torch.tensor([[928, 855], [199, -1], [999, 928]])
    x_next = teacher_walk(m, x, grids, acs, bf16=False)
    v = distilled_v_target(x, x_next, _abs(acs, grids[:, 0]), _abs(acs, grids[:, 1]))
    with torch.no_grad():
        own = m(x, grids[:, 0]).sample
    assert torch.allclose(v, own, atol=1e-4)


def test_grids_follow_the_sampler():
    from hspace_studio.engine.timesteps import power_timesteps
    from hspace_studio.training.distill import student_timesteps, substep_grid

    ts = student_timesteps(10, 0.7)
    assert ts[:-1] == power_timesteps(1000, 10, 0.7).tolist() and ts[-1] == -1
    assert substep_grid(999, 928, 5) == [999, 985, 971, 956, 942, 928]
    assert substep_grid(199, -1, 4) == [199, 149, 100, 50, -1]


def _mismatch(student, teacher, acs, substeps=4):
    """Mean squared distance between the student's one step and the teacher's walk, over
    held-out toy faces noised to each sampler interval's start."""
    from hspace_studio.toyfaces.generator import render, to_model_range
    from hspace_studio.training.distill import _abs, student_timesteps, substep_grid, teacher_walk

    ts = student_timesteps(4, 0.7)
    n = len(ts) - 1
    x0 = torch.from_numpy(to_model_range(torch.stack(
        [torch.from_numpy(render(s, 16)[0].copy()) for s in range(4 * n)]).numpy()))
    g = torch.Generator().manual_seed(5)
    t0 = torch.tensor(ts[:-1]).repeat(4)
    ab = _abs(acs, t0)
    x = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=g)
    grids = torch.tensor([substep_grid(ts[i], ts[i + 1], substeps) for i in range(n)] * 4)
    want = teacher_walk(teacher, x, grids, acs, bf16=False)
    got = teacher_walk(student, x, grids[:, [0, -1]], acs, bf16=False)
    return float(((want - got) ** 2).mean())


def test_distilling_brings_the_one_step_chain_to_the_teachers_walk(tmp_path):
    from diffusers import UNet2DModel

    from hspace_studio.engine.architectures import UNetArchitecture
    from hspace_studio.engine.denoiser import Denoiser, Guide
    from hspace_studio.training import distill

    init, guide = tmp_path / "init", tmp_path / "guide"
    tiny_unet("a").save_pretrained(init)
    torch.manual_seed(3)
    gm = tiny_unet("a")
    with torch.no_grad():
        for p in gm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gm.save_pretrained(guide)
    acs = _acs()
    teacher = Denoiser(UNet2DModel.from_pretrained(init).eval(), UNetArchitecture(),
                       guide=Guide(UNet2DModel.from_pretrained(guide).eval(), 3.0))
    before = _mismatch(UNet2DModel.from_pretrained(init).eval(), teacher, acs)
    out = tmp_path / "out"
    args = ["--init", str(init), "--guide", str(guide), "--guide-weight", "3", "--steps", "4",
            "--substeps", "4", "--plain-share", "0", "--batch", "8", "--lr", "2e-3", "--ema", "0",
            "--checkpoint", str(tmp_path / "ck"), "--out", str(out), "--threads", "1", "--no-bf16"]
    assert distill.main(args + ["--max-steps", "100"]) == 0
    raw = UNet2DModel.from_pretrained(str(out) + "-raw").eval()
    after = _mismatch(raw, teacher, acs)
    assert after < 0.7 * before, (before, after)  # measured: 0.173 -> 0.100
    info = json.loads((out / "training.json").read_text())
    assert info["distill_step"] == 100 and info["guide_weight"] == 3.0
    # resumed from the checkpoint: continues the step count
    assert distill.main(args + ["--max-steps", "102"]) == 0
    assert json.loads((out / "training.json").read_text())["distill_step"] == 102


def test_bad_arguments_end_with_a_usage_error(tmp_path, capsys):
    import pytest

    from hspace_studio.training import distill

    init = tmp_path / "init"
    tiny_unet("a").save_pretrained(init)
    base = ["--init", str(init), "--guide", str(init), "--checkpoint", str(tmp_path / "ck"),
            "--out", str(tmp_path / "out")]
    for bad, says in ((["--guide-interval", "300"], "LO:HI"), (["--guide-interval", "900:300"], "LO"),
                      (["--plain-share", "1"], "--plain-share"), (["--substeps", "0"], "at least 1"),
                      (["--init", str(tmp_path / "nowhere")], "not a UNet2DModel folder")):
        with pytest.raises(SystemExit) as e:
            distill.main(base + bad)
        assert e.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "ck" / "state.pt").exists()
