"""Hub downloads against a local stand-in of the hub's HTTP endpoints (no network): the files
fetched are the pipeline's (diffusers' own selection, a variant where asked), progress is
reported, Cancel stops a download and the next one resumes it."""
import pytest
from hspace_studio.core.errors import Cancelled, ModelLoadError
from hspace_studio.core.progress import CancelToken
from hspace_studio.engine.hub import download
from hspace_studio.engine.model import load_model

from ..fake_hub import FakeHub, folder_files, pointed_at
from ..tiny_models import save_pixel_model, save_sd_model


@pytest.fixture(scope="module")
def sd_repo(tmp_path_factory):
    """A tiny SD pipeline's files, plus what a real repository also holds: an fp16 variant of
    the UNet, pickled duplicates and an original-layout checkpoint at the top."""
    from diffusers import UNet2DConditionModel

    folder = save_sd_model(tmp_path_factory.mktemp("repo") / "sd")
    files = folder_files(folder)
    pipeline_files = set(files)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    half = tmp_path_factory.mktemp("fp16")
    unet.half().save_pretrained(half, variant="fp16")
    files["unet/diffusion_pytorch_model.fp16.safetensors"] = (half / "diffusion_pytorch_model.fp16.safetensors").read_bytes()
    files["unet/diffusion_pytorch_model.bin"] = b"pickled duplicate" * 100
    files["v1-5-pruned-emaonly.ckpt"] = b"original layout" * 1000
    files["README.md"] = b"# tiny"
    return folder, files, pipeline_files


def test_only_the_pipelines_files_are_fetched_and_the_model_loads(sd_repo, tmp_path, monkeypatch):
    folder, files, pipeline_files = sd_repo
    with FakeHub({"org/tiny-sd": files}) as hub, pointed_at(hub, tmp_path / "cache", monkeypatch):
        seen = []
        root = download("org/tiny-sd", progress=lambda d, n, m: seen.append(m))
        fetched = {name for _, name in hub.fetched}
        assert fetched == pipeline_files  # no .ckpt, no .bin, no fp16 variant, no README
        assert seen and "downloading org/tiny-sd" in seen[-1]
        assert (root / "model_index.json").is_file()
        model = load_model("org/tiny-sd")
        assert model.fingerprint == load_model(str(folder)).fingerprint


def test_a_variant_is_fetched_where_asked(sd_repo, tmp_path, monkeypatch):
    _, files, pipeline_files = sd_repo
    with FakeHub({"org/tiny-sd": files}) as hub, pointed_at(hub, tmp_path / "cache", monkeypatch):
        download("org/tiny-sd", variant="fp16")
        fetched = {name for _, name in hub.fetched}
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in fetched
    assert "unet/diffusion_pytorch_model.safetensors" not in fetched
    assert "vae/diffusion_pytorch_model.safetensors" in fetched  # components without the variant: the plain file


def test_cancel_stops_a_download_and_the_next_one_resumes(sd_repo, tmp_path, monkeypatch):
    from ..fake_hub import COMMIT

    _, files, pipeline_files = sd_repo
    token = CancelToken()
    seen = []

    def progress(done, total, msg):
        seen.append(msg)
        if len(seen) == 2:
            token.cancel()

    snap = tmp_path / "cache" / "models--org--tiny-sd" / "snapshots" / COMMIT
    with FakeHub({"org/tiny-sd": files}, chunk_delay=0.02, chunk=2048) as hub, \
            pointed_at(hub, tmp_path / "cache", monkeypatch):
        with pytest.raises(Cancelled):
            download("org/tiny-sd", progress=progress, cancel=token)
        assert not all((snap / f).is_file() for f in pipeline_files)  # stopped part-way
        first = len(hub.fetched)
        hub.chunk_delay = 0
        root = download("org/tiny-sd")
        again = {name for _, name in hub.fetched[first:]}
    assert root == snap and all((root / f).read_bytes() == files[f] for f in pipeline_files)
    assert again < pipeline_files  # what had arrived before Cancel is not fetched again


def test_a_single_model_repository_gets_its_configs_and_safetensors(tmp_path, monkeypatch):
    folder = save_pixel_model(tmp_path / "ddpm")
    files = folder_files(folder)
    files["unet/diffusion_pytorch_model.bin"] = b"pickled" * 100
    with FakeHub({"org/ddpm": files}) as hub, pointed_at(hub, tmp_path / "cache", monkeypatch):
        load_model("org/ddpm")
        fetched = {name for _, name in hub.fetched}
    assert fetched == {f for f in files if not f.endswith(".bin")}


def test_an_unknown_repository_is_a_one_line_error(tmp_path, monkeypatch):
    with FakeHub({}) as hub, pointed_at(hub, tmp_path / "cache", monkeypatch):
        with pytest.raises(ModelLoadError, match="could not get 'org/none'"):
            load_model("org/none")


def test_the_apps_load_job_reports_the_download_and_cancels_it(sd_repo, tmp_path, monkeypatch):
    from hspace_studio.app.state import EngineState

    _, files, _ = sd_repo
    token = CancelToken()
    seen = []

    def progress(done, total, msg):
        seen.append(msg)
        token.cancel()

    with FakeHub({"org/tiny-sd": files}, chunk_delay=0.02, chunk=2048) as hub, \
            pointed_at(hub, tmp_path / "cache", monkeypatch):
        state = EngineState()
        with pytest.raises(Cancelled):
            state.load_model("org/tiny-sd", None, progress=progress, cancel=token)
        assert state.model is None and "downloading org/tiny-sd" in seen[0]
        hub.chunk_delay = 0
        info = state.load_model("org/tiny-sd", None)
        assert info.source == "org/tiny-sd" and info.conditioning is not None
