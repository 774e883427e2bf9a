"""PySCF and torch in one process with several OpenMP threads: the SCF must still converge."""

import os
import subprocess
import sys

SCRIPT = """
from rhosr.config import get_preset
from rhosr.dft import run_label
from rhosr.molecule import read_molecule
import torch  # after PySCF code was imported: must not split the OpenMP runtime
label = run_label(read_molecule("qm9:3"), get_preset("tiny"))
print(label.cycles, label.attempts[0])
"""


def test_scf_converges_with_two_threads_and_torch():
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plain: converged" in result.stdout


def test_predict_runs_numpys_blas_on_one_thread_unless_openblas_num_threads_is_set(tmp_path, monkeypatch):
    """``rhosr predict`` limits NumPy's BLAS to one thread while it predicts (idle OpenBLAS
    threads spin on the cores the network needs: benchmarks/batch_threads.py), and gives it back
    after; a user's ``OPENBLAS_NUM_THREADS`` is left alone."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import rhosr.predict
    from rhosr.cli import main

    def blas_threads():  # NumPy's own (other BLAS libraries PySCF or SciPy load may be serial builds)
        return {pool["num_threads"] for pool in threadpool_info()
                if pool["user_api"] == "blas" and "numpy" in pool["filepath"]}

    seen = []
    real = rhosr.predict.predict

    def recording(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(rhosr.predict, "predict", recording)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        assert main(["predict", "qm9:3", "-o", str(tmp_path / "a.cube"), "--quiet", "--base-only"]) == 0
        assert seen == [{1}] and blas_threads() == {2}
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
        seen.clear()
        assert main(["predict", "qm9:3", "-o", str(tmp_path / "b.cube"), "--quiet", "--base-only"]) == 0
        assert seen == [{2}]
