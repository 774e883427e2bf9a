"""What the network of a prediction costs: the ``qm9_unet`` config's U-Net with other channel
widths and pixel-shuffle kernels, run by ONNX Runtime as ``rhosr predict`` runs it.

Each variant is the shipped ``qm9_unet`` config (inputs, base, output scale) with ``channels``
and ``head_kernel`` replaced, random weights, exported to ONNX like ``rhosr export-onnx``
(whose check against PyTorch it passes); timed on the real inputs of the first ``--n`` QM9 test
molecules (their coarse channels and fitted prior), ``--threads`` intra-op threads, the minimum
of ``--repeat`` passes per molecule after one warm-up, summed over the molecules. Prints each
variant's parameters, seconds per molecule and ratio to the first (the baseline, measured in
the same run). The network's accuracy does not follow from this: each variant must be trained.

    OMP_NUM_THREADS=1 python benchmarks/trunk_inference_cost.py [--n 5] [--md out.md]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
VARIANTS = [((16, 32, 64), 3), ((16, 32, 64), 1), ((8, 16, 32), 3), ((8, 16, 32), 1), ((4, 8, 16), 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="QM9 test molecules (the seeded split's first N)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--md", type=Path, default=RESULTS / "trunk_inference_cost.md")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from rhosr.checkpoint import save_model
    from rhosr.model import build_model, count_parameters
    from rhosr.molecule import read_molecule
    from rhosr.onnx_export import export_onnx
    from rhosr.predict import prepare
    from rhosr.qm9 import load_split
    from rhosr.train import TrainConfig

    base_config = TrainConfig.load("qm9_unet").model
    meta = {"grid": {"upscale": 2, "margin_angstrom": 4.0}}
    model = build_model(base_config)
    feeds, meshes = [], []
    for index in load_split()["test"][: args.n]:
        prepared = prepare(meta, read_molecule(f"qm9:{int(index)}"))
        x = model.build_inputs(prepared.placed, prepared.grid)
        fine = model.build_fine(prepared.placed, prepared.grid)
        feeds.append({"x": np.asarray(x, dtype=np.float32)[None],
                      "fine": np.asarray(fine, dtype=np.float32)[None, None]})
        meshes.append("x".join(map(str, prepared.grid.coarse_mesh)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (channels, head_kernel) in enumerate(VARIANTS):
            config = copy.deepcopy(base_config)
            config["trunk"]["channels"] = list(channels)
            config["trunk"]["head_kernel"] = head_kernel
            variant = build_model(config).eval()
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for p in variant.parameters():
                    p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            folder = Path(tmp) / str(n)
            save_model(folder, variant, meta)
            export_onnx(folder)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
            seconds = 0.0
            for feed in feeds:
                session.run(None, feed)
                best = float("inf")
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    session.run(None, feed)
                    best = min(best, time.perf_counter() - t0)
                seconds += best
            rows.append((channels, head_kernel, count_parameters(variant), seconds / len(feeds)))
            print(f"channels {channels}, head_kernel {head_kernel}: {rows[-1][3]:.3f} s a molecule",
                  flush=True)
    baseline = rows[0][3]
    lines = [
        "# What the network of a prediction costs",
        "",
        f"Command: `OMP_NUM_THREADS={args.threads} python benchmarks/trunk_inference_cost.py "
        f"--n {args.n}`; the `qm9_unet` config's U-Net with the channels and pixel-shuffle kernel below "
        f"(random weights), exported to ONNX and run by ONNX Runtime on {args.threads} thread(s) on the "
        f"inputs of the first {args.n} QM9 test molecules (coarse meshes {', '.join(meshes)}); the minimum "
        f"of {args.repeat} passes per molecule, averaged over the molecules.",
        "",
        "| channels | head_kernel | parameters | s a molecule | ratio to the first |",
        "|---|---|---|---|---|",
    ]
    for channels, head_kernel, params, seconds in rows:
        lines.append(f"| {'/'.join(map(str, channels))} | {head_kernel} | {params:,} | {seconds:.3f} | "
                     f"{seconds / baseline:.2f} |")
    args.md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
