import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.tiny_models import save_latent_model, save_pixel_model  # noqa: E402

from hspace_studio.domains import activate  # noqa: E402

activate()  # the toy faces, as the command line and the app start with

# one thread per worker when pytest-xdist runs the suite on several processes (make test: -n 2)
_THREADS = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"
torch.set_num_threads(max(1, min(2, int(os.environ.get("HSPACE_TEST_THREADS", _THREADS)))))


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run only when selected (``-m slow``)."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A pixel UNet (config a) with a DDPM scheduler config, clip_sample on."""
    return save_pixel_model(tmp_path_factory.mktemp("tiny_a"), "a")


@pytest.fixture(scope="session")
def tiny_model_8_dir(tmp_path_factory):
    """The same pixel UNet (config a, epsilon, DDPM scheduler defaults) at 8x8: h is 32x4x4,
    small enough for dense Jacobians and exact PCA in tests."""
    return save_pixel_model(tmp_path_factory.mktemp("tiny_a8"), "a", sample_size=8)


@pytest.fixture(scope="session")
def tiny_model_b_dir(tmp_path_factory):
    return save_pixel_model(tmp_path_factory.mktemp("tiny_b"), "b", prediction_type="v_prediction",
                            clip_sample=False, spacing="trailing", beta_schedule="squaredcos_cap_v2")


@pytest.fixture(scope="session")
def latent_model_dir(tmp_path_factory):
    return save_latent_model(tmp_path_factory.mktemp("tiny_ldm"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from hspace_studio.engine import load_model

    return load_model(str(tiny_model_dir), device="cpu")
