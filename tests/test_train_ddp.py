"""The same `captioning train` command under torchrun: two CPU processes, gloo, DistributedDataParallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .test_train_run import ROOT, make_tiny_dataset, tiny_args


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    data = make_tiny_dataset(tmp_path / "shapes")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "captioning.cli", "train", *tiny_args(data, run, "--epochs", "1", "--device", "cpu")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # Seen once in ~20 runs on a loaded 2-core VM: a rank aborts inside gloo (C++ std::terminate, no
        # Python error) as the first step starts. Rerun once; the same failure twice, or any other, fails.
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x 2 processes" in proc.stdout
    assert proc.stdout.count("training on") == 1  # only rank 0 talks (and writes)
    trainer = json.loads((run / "last" / "trainer.json").read_text())["trainer"]
    # 8 images over 2 processes, 2 images (x 5 captions) per batch each: 2 steps.
    assert trainer["step"] == 2 and trainer["epoch"] == 1
    assert (run / "best" / "model.safetensors").is_file()
