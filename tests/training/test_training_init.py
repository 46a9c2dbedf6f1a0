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


def test_slow_ema_starts_from_the_ema_and_is_kept(tmp_path):
    from diffusers import UNet2DModel

    from hspace_studio.training import ddpm

    common = ["--checkpoint", str(tmp_path / "ck"), "--batch", "2", "--size", "16",
              "--channels", "16,16,32,32", "--threads", "1", "--no-bf16"]
    out = tmp_path / "m"
    ddpm.main(["--out", str(out), "--max-steps", "2", *common])
    assert "ema_slow" not in torch.load(tmp_path / "ck" / "state.pt", weights_only=True)
    assert not (tmp_path / "m-slow").exists()
    # started at step 2 from the EMA; a decay near 0 makes it follow the trained weights
    ddpm.main(["--out", str(out), "--max-steps", "3", "--slow-ema", "1e-9", *common])
    st = torch.load(tmp_path / "ck" / "state.pt", weights_only=True)
    slow = UNet2DModel.from_pretrained(tmp_path / "m-slow")
    info = json.loads((tmp_path / "m-slow" / "training.json").read_text())
    assert info["step"] == 3 and info["ema"] == 1e-9
    sd = slow.state_dict()
    params = dict(slow.named_parameters())
    for k in params:
        assert torch.allclose(sd[k], st["model"][k], atol=1e-6)
        assert torch.equal(sd[k], st["ema_slow"][k])
    # a run without --slow-ema keeps the slow EMA in the checkpoint for a later run
    ddpm.main(["--out", str(out), "--max-steps", "4", *common])
    st4 = torch.load(tmp_path / "ck" / "state.pt", weights_only=True)
    assert st4["step"] == 4 and all(torch.equal(st4["ema_slow"][k], st["ema_slow"][k]) for k in params)
    # a decay of 1 freezes it: resumed, not restarted from the (moved) EMA
    ddpm.main(["--out", str(out), "--max-steps", "5", "--slow-ema", "1.0", *common])
    st5 = torch.load(tmp_path / "ck" / "state.pt", weights_only=True)
    assert all(torch.equal(st5["ema_slow"][k], st["ema_slow"][k]) for k in params)
    assert not all(torch.equal(st5["ema"][k], st["ema"][k]) for k in params)


def test_min_snr_loss_is_the_weighted_x0_error():
    from hspace_studio.training import ddpm

    sched = ddpm.build_scheduler()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(6, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 200, 500, 900, 999])
    ab = sched.alphas_cumprod[t].view(-1, 1, 1, 1).double()
    x0, noise = x0.double(), noise.double()
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    v = ab.sqrt() * noise - (1 - ab).sqrt() * x0
    v_hat = v + 0.1 * torch.randn(6, 3, 8, 8, generator=g).double()
    x0_hat = ab.sqrt() * xt - (1 - ab).sqrt() * v_hat
    snr = ab / (1 - ab)
    want = (snr.clamp(max=5.0) * (x0 - x0_hat) ** 2).mean()
    assert torch.allclose(ddpm.v_loss(v_hat, v, ab, 5.0), want)
    assert torch.allclose(ddpm.v_loss(v_hat, v, ab), ((v_hat - v) ** 2).mean())
    # high and low noise both weigh less than in the plain v-loss
    w = snr.clamp(max=5.0) / (snr + 1)
    assert w[0] < 0.01 and w[-1] < 0.01 and w[3] > 0.4


def test_bad_ema_and_gamma_are_refused(tmp_path, capsys):
    import pytest

    from hspace_studio.training import ddpm

    for bad in (["--slow-ema", "1.5"], ["--slow-ema", "-0.1"], ["--min-snr", "-1"]):
        with pytest.raises(SystemExit):
            ddpm.main(["--out", str(tmp_path / "m"), "--checkpoint", str(tmp_path / "ck"), *bad])
        assert "--" in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()


def _tiny_run(tmp_path, max_steps: int) -> list:
    """Arguments of a DDPM run of a few steps on a tiny UNet, in tmp_path."""
    return ["--out", str(tmp_path / "m"), "--checkpoint", str(tmp_path / "ck"), "--max-steps", str(max_steps),
            "--batch", "2", "--size", "16", "--channels", "16,16,32,32", "--threads", "1", "--no-bf16"]


def test_ctrl_c_saves_a_checkpoint_the_same_command_resumes(tmp_path, monkeypatch, capsys):
    from hspace_studio.training import ddpm

    calls = []
    real = ddpm.v_loss

    def loss_then_interrupt(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ddpm, "v_loss", loss_then_interrupt)
    args = _tiny_run(tmp_path, 4)
    assert ddpm.main(args) == 130
    assert "interrupted at step 2" in capsys.readouterr().out
    st = torch.load(tmp_path / "ck" / "state.pt", weights_only=True)
    assert st["step"] == 2 and st["seed_pos"] == 6  # the third batch was drawn, not trained on
    assert json.loads((tmp_path / "m" / "training.json").read_text())["step"] == 2
    assert ddpm.main(args) == 0  # resumed: steps 3 and 4
    assert torch.load(tmp_path / "ck" / "state.pt", weights_only=True)["step"] == 4


def test_sigterm_stops_the_run_with_a_checkpoint(tmp_path, monkeypatch, capsys):
    """A background run ignores Ctrl-C; ``kill`` (SIGTERM) stops it as Ctrl-C would."""
    import os
    import signal

    from hspace_studio.training import ddpm

    calls = []
    real = ddpm.v_loss

    def loss_then_kill(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(ddpm, "v_loss", loss_then_kill)
    before = signal.getsignal(signal.SIGTERM)
    args = _tiny_run(tmp_path, 6)
    assert ddpm.main(args) == 130
    assert "interrupted at step" in capsys.readouterr().out
    step = torch.load(tmp_path / "ck" / "state.pt", weights_only=True)["step"]
    assert 2 <= step <= 3 and json.loads((tmp_path / "m" / "training.json").read_text())["step"] == step
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
