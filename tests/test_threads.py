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
