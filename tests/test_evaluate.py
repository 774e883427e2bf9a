"""Evaluation: Err_rho tables over a store split or cube folders, per-element errors."""

import json

import numpy as np
import pytest

from rhosr.evaluation import element_masks, evaluate_pair
from rhosr.grid import BOHR_ANGSTROM
from rhosr.io import write_density


def test_element_masks_match_brute_force_with_periodic_wrap():
    lengths, mesh = (6.0, 7.0, 8.0), (12, 14, 16)
    positions = np.array([[0.2, 3.5, 7.9], [3.0, 3.0, 3.0]])  # the first atom straddles the box faces
    masks = element_masks(["O", "H"], positions, lengths, mesh)
    grid = np.stack(np.meshgrid(*[np.arange(n) * L / n for n, L in zip(mesh, lengths)], indexing="ij"), -1)
    for symbol, pos, radius in (("O", positions[0], 0.63), ("H", positions[1], 0.32)):
        d = grid - pos
        d -= np.round(d / lengths) * lengths
        expected = (d**2).sum(-1) <= (radius / BOHR_ANGSTROM) ** 2
        assert np.array_equal(masks[symbol], expected)
        assert expected.sum() > 0


def test_evaluate_pair_of_a_scaled_label():
    rng = np.random.default_rng(0)
    label = rng.random((8, 8, 8)).astype(np.float32)
    lengths = (4.0, 4.0, 4.0)
    n_e = float(label.sum() * 64 / 512)
    result = evaluate_pair("x", ["H"], np.array([[2.0, 2.0, 2.0]]), lengths, n_e, 1.02 * label, label,
                           label[::2, ::2, ::2])
    assert result.err_model == pytest.approx(2.0, rel=1e-4)
    assert result.err_sad == pytest.approx(0.0, abs=1e-6)
    assert result.elements_model["H"] == pytest.approx(2.0, rel=1e-4)


def test_evaluate_store_split_writes_reports(tiny_store, tiny_model_dir, tmp_path, run_cli):
    code, out, _ = run_cli("evaluate", "--store", tiny_store, "--split", "validation", "--model",
                           tiny_model_dir, "-o", tmp_path / "rep")
    assert code == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    (mol,) = report["molecules"]
    assert 5 < mol["err_sad"] < 40 and mol["err_model"] > 0
    assert set(mol["elements_model"]) == {"O", "H"}
    assert "| model |" in (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "errors.png").stat().st_size > 5_000
    assert "1 molecules: Err_rho model mean" in out
    assert 5 < mol["err_base"] < 40  # base sad_linear: the interpolated SAD alone
    assert "the model's base (sad_linear) alone" in (tmp_path / "rep" / "report.md").read_text()
    assert "the model's base (sad_linear) alone mean" in out


def test_evaluate_reports_the_base_of_an_untrained_model_as_its_output(tiny_store, tmp_path, run_cli):
    """An untrained model with a base returns its base: the two errors agree, in both modes."""
    from rhosr.checkpoint import save_model
    from rhosr.model import build_model
    from rhosr.predict import predict_density

    folder = tmp_path / "untrained"
    trunk = {"name": "srresnet", "num_feat": 4, "num_block": 1, "norm": "none"}
    save_model(folder, build_model({"trunk": trunk, "base": "sad_fine"}),
               {"grid": {"upscale": 2, "margin_angstrom": 3.0}})
    code, _, err = run_cli("evaluate", "--store", tiny_store, "--split", "validation", "--model", folder,
                           "-o", tmp_path / "rep")
    assert code == 0, err
    (mol,) = json.loads((tmp_path / "rep" / "report.json").read_text())["molecules"]
    assert mol["err_base"] == pytest.approx(mol["err_model"], rel=1e-4)
    (pred_dir := tmp_path / "pred").mkdir()
    (ref_dir := tmp_path / "ref").mkdir()
    from rhosr.grid import place_in_box
    from rhosr.molecule import read_molecule

    mol3, grid = place_in_box(read_molecule("qm9:3"), 2, 3.0)
    rho, _ = predict_density("qm9:3", model=str(folder))
    write_density(pred_dir / "w.cube", mol3.atoms, rho)
    write_density(ref_dir / "w.cube", mol3.atoms, 1.01 * rho)
    code, out, err = run_cli("evaluate", "--cubes", pred_dir, ref_dir, "--model", folder)
    assert code == 0, err
    assert "the model's base (sad_fine) alone mean" in out


def test_evaluate_cube_folders(tiny_store, tmp_path, run_cli):
    from rhosr.store import DatasetStore, entry_atoms

    store = DatasetStore.open(tiny_store)
    (pred_dir := tmp_path / "pred").mkdir()
    (ref_dir := tmp_path / "ref").mkdir()
    for i, entry_id in enumerate(store.entry_ids("train")):
        meta = store.entry_meta(entry_id)
        label = np.asarray(store.read_entry(entry_id, ("label",)).label, float)
        atoms = entry_atoms(meta)
        write_density(ref_dir / f"{entry_id}.cube", atoms, label)
        if i == 0:
            write_density(pred_dir / f"{entry_id}.cube", atoms, 0.99 * label)
        else:  # a prediction as a flat .npy beside a reference cube
            np.save(pred_dir / f"{entry_id}.npy", 0.99 * label.ravel())
            n_e = meta["n_electrons"]  # and the same molecule as a cation: N_e - 1 electrons
            write_density(ref_dir / "cation.cube", atoms, label * (n_e - 1) / n_e)
            write_density(pred_dir / "cation.cube", atoms, 0.99 * label * (n_e - 1) / n_e)
    code, out, _ = run_cli("evaluate", "--cubes", pred_dir, ref_dir, "-o", tmp_path / "rep")
    assert code == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert len(report["molecules"]) == 3
    for mol in report["molecules"]:
        assert mol["err_model"] == pytest.approx(1.0, rel=1e-3)  # N_e from the reference's integral
        assert 5 < mol["err_sad"] < 40


def test_evaluate_bad_inputs(tmp_path, run_cli, tiny_store):
    code, _, err = run_cli("evaluate", "--cubes", tmp_path / "a", tmp_path / "b")
    assert code == 2 and err.strip().endswith("not a folder")
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli("evaluate", "--store", tiny_store, "--split", "validation",
                           "-o", tmp_path / "afile")
    assert code == 2 and "exists and is not a folder" in err
    code, _, err = run_cli("evaluate", "--store", tiny_store, "--split", "validation", "--limit", "-1")
    assert code == 2 and "--limit must be >= 1" in err
    code, _, err = run_cli("evaluate", "--store", tiny_store, "--split", "test", "--model", "nope")
    assert code == 2 and "no such model" in err


def test_store_entries_are_evaluated_in_the_split_random_order():
    from rhosr.evaluation import in_split_order
    from rhosr.qm9 import load_split

    first = [f"qm9_{int(i):06d}" for i in load_split()["test"][:3]]
    ids = sorted(first) + ["water"]
    assert in_split_order(ids, "test") == [*first, "water"]


def test_reports_show_the_home_folder_as_tilde_and_shipped_models_by_name(monkeypatch, tmp_path):
    """A committed or shared report names no one machine's folders."""
    from rhosr.evaluation import shown_model, shown_path
    from rhosr.predict import model_folder

    monkeypatch.setenv("HOME", str(tmp_path))
    assert shown_path(tmp_path / "stores" / "qm9") == "~/stores/qm9"
    assert shown_path(f"{tmp_path}x/a") == f"{tmp_path}x/a"  # a sibling folder is not home
    assert shown_path("runs/a") == "runs/a"
    assert shown_model(model_folder("qm9-small")) == "qm9-small (shipped in the package)"
    assert shown_model(tmp_path / "runs" / "best") == "~/runs/best"
