"""flows._runtime: the model thread limit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flows._runtime import limit_model_threads


def test_limit_model_threads_sets_torch_threads_once_torch_is_loaded() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        limit_model_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_limit_model_threads_before_torch_holds_for_every_thread() -> None:
    pytest.importorskip("torch")
    code = """
import threading
from flows._runtime import limit_model_threads
limit_model_threads(1)
import torch
seen = []
t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
t.start(); t.join()
print(torch.get_num_threads(), seen[0])
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.split() == ["1", "1"]
