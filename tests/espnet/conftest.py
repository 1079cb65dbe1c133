"""Fixtures of the espnet tests: the synthetic corpus, and one teacher trained once per session."""

import sys

import pytest

from asrc.data.tokens import letter_tokens
from espnet_helpers import TINY_ENCODER, teacher_config, write_data_dir, write_yaml


@pytest.fixture
def tiny_encoder_config():
    return {k: (list(map(list, v)) if k == "conv_layers" else v) for k, v in TINY_ENCODER.items()}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """``{"train": dir, "valid": dir, "tokens": tokens.txt}`` (fairseq letter tokens, <blank> first)."""
    root = tmp_path_factory.mktemp("corpus")
    tokens = root / "tokens.txt"
    tokens.write_text("".join(t + "\n" for t in letter_tokens()))
    return {"train": write_data_dir(root, "train", 24, 1), "valid": write_data_dir(root, "valid", 8, 2),
            "tokens": tokens, "root": root}


@pytest.fixture(scope="session")
def espnet_ready():
    """Import the adapter once (about 15-20 s: espnet2's own imports)."""
    import asrc.espnet  # noqa: F401

    return True


@pytest.fixture(scope="session")
def trained_teacher(tmp_path_factory, corpus, espnet_ready):
    """A teacher trained for 2 epochs in this process: ``{"exp": exp dir, "model": model dir, "seconds": wall}``."""
    import time

    from asrc.bin.train import main

    root = tmp_path_factory.mktemp("teacher")
    conf = write_yaml(root / "teacher.yaml", teacher_config(corpus))
    start = time.perf_counter()
    rc = main(["--config", str(conf), "--exp_dir", str(root / "exp"), "--export_model_dir", str(root / "model")])
    seconds = time.perf_counter() - start
    assert rc == 0
    print(f"\n[tiny teacher: 2 epochs in {seconds:.1f} s]", file=sys.stderr)
    return {"exp": root / "exp" / "teacher", "model": root / "model", "seconds": seconds, "config": conf}
