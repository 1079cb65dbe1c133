import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


@pytest.fixture
def an4_root():
    path = os.environ.get("ASRC_AN4", os.path.join(SHARED_DATA, "an4"))
    if not os.path.isdir(os.path.join(path, "wav")):
        pytest.skip(f"AN4 corpus not found at {path} (set ASRC_AN4)")
    return path
