"""Faults across processes: SIGKILL mid-epoch then resume; two CPU processes (gloo, torchrun)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from espnet_helpers import teacher_config, write_yaml

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

REPO = Path(__file__).resolve().parents[2]


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.pop("RANK", None)
    e.pop("WORLD_SIZE", None)
    return e


def wait_for(predicate, proc, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_mid_epoch_then_the_same_command_resumes(corpus, tmp_path, espnet_ready):
    from asrc.bin.train import main

    # 3 epochs of 50 updates: an epoch lasts seconds, the kill comes 0.1 s after it starts.
    conf = dict(teacher_config(corpus), max_epoch=3, num_iters_per_epoch=50, batch_size=2)
    argv = ["--config", str(write_yaml(tmp_path / "resume.yaml", conf)), "--exp_dir", str(tmp_path / "exp")]
    exp = tmp_path / "exp" / "resume"
    log = exp / "train.log"
    proc = subprocess.Popen([sys.executable, "-m", "asrc.bin.train"] + argv, cwd=tmp_path, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: log.is_file() and "2/3epoch started" in log.read_text(), proc, 240, "epoch 2")
        time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (exp / "1epoch.pth").is_file() and not (exp / "2epoch.pth").exists(), "not killed mid-epoch 2"
    before = torch.load(exp / "checkpoint.pth", weights_only=False)["reporter"]["stats"][1]["train"]["loss"]

    assert main(argv) == 0  # the same command, again
    text = log.read_text()
    assert "The training was resumed using" in text and "The training was finished at 3 epochs" in text
    state = torch.load(exp / "checkpoint.pth", weights_only=False)
    stats = state["reporter"]["stats"]
    assert sorted(stats) == [1, 2, 3] and stats[1]["train"]["loss"] == before  # epoch 1 kept, not redone
    assert int(state["model"]["encoder.num_updates"]) == 3 * 50
    assert (exp / "3epoch.pth").is_file()


def test_two_cpu_processes_with_gloo(corpus, tmp_path):
    """ESPnet's distributed mode with an external launcher: torchrun, gloo, --ngpu 0."""
    conf = dict(teacher_config(corpus), max_epoch=1, batch_size=4, num_iters_per_epoch=4)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "asrc.bin.train",
           "--config", str(write_yaml(tmp_path / "ddp.yaml", conf)), "--exp_dir", str(tmp_path / "exp"),
           "--ngpu", "0", "--multiprocessing_distributed", "false", "--dist_backend", "gloo"]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-3000:]
    exp = tmp_path / "exp" / "ddp"
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["distributed"] is True and config["dist_backend"] == "gloo"
    stats = torch.load(exp / "checkpoint.pth", weights_only=False)["reporter"]["stats"][1]["train"]
    # 4 updates, each on a batch of 4 split 2 + 2 over the ranks.
    assert stats["total_count"] == 4
    log = (exp / "train.log").read_text()
    assert "[" in log and ":0]" in log and "The training was finished at 1 epochs" in log
    print(f"\n[2-process gloo run: {seconds:.1f} s wall incl. 2 x espnet import]", file=sys.stderr)
