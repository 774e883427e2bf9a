"""Input builders and bases through the whole data path: per-element SAD channels, a molecule
with an element the model never saw, the dataset, prediction, evaluation and training of a
U-Net model on the fine-mesh SAD base."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from tests.conftest import random_weights

from rhosr.errors import InputError
from rhosr.grid import place_in_box
from rhosr.model import build_model, model_config
from rhosr.molecule import Molecule, read_molecule
from rhosr.sad import sad_density, sad_fine

TINY_UNET = {"name": "unet", "channels": [4, 6], "blocks": 1, "kernel": 3}
UNET_FINE = {"inputs": ["sad", {"name": "sad_elements", "elements": ["H", "C", "N", "O"]}],
             "trunk": TINY_UNET, "base": "sad_fine"}


@pytest.fixture(scope="module")
def water():
    return place_in_box(read_molecule("qm9:3"))


def test_inputs_element_channels_sum_to_the_sad(water):
    mol, grid = water
    config = model_config({"inputs": ["sad", {"name": "sad_elements", "elements": ["H", "C", "O"]}]})
    x = build_model(config).build_inputs(mol, grid)
    assert x.shape == (4, *grid.coarse_mesh) and x.dtype == np.float32
    np.testing.assert_allclose(x[1:].sum(axis=0), x[0], rtol=1e-5, atol=1e-7)
    assert not x[2].any()  # no carbon in water
    np.testing.assert_allclose(x[0], sad_density(mol, grid, "coarse"), rtol=1e-6)


def test_inputs_unseen_element_is_in_the_sad_channel_only():
    """HF with elements [H, O]: the F atom is in the whole-SAD channel, in no element channel."""
    mol, grid = place_in_box(Molecule(Atoms("HF", [(0, 0, 0), (0, 0, 0.92)]), name="HF"))
    config = model_config({"inputs": ["sad", {"name": "sad_elements", "elements": ["H", "O"]}]})
    x = build_model(config).build_inputs(mol, grid)
    dv = grid.voxel_volume("coarse")
    assert x[0].sum() * dv == pytest.approx(8.0, rel=1e-3)  # H 1 + F 7 valence electrons
    assert x[1].sum() * dv == pytest.approx(x[0].sum() * dv - 7.0, abs=0.05)  # the H atom's share
    assert not x[2].any()


@pytest.fixture(scope="module")
def unet_model_dir(tmp_path_factory):
    from rhosr.checkpoint import save_model

    folder = tmp_path_factory.mktemp("unet_model")
    model = random_weights(build_model(UNET_FINE), seed=2)
    model.trunk.zero_output()  # untrained: the fine SAD itself, so densities are sane
    save_model(folder, model, {"grid": {"upscale": 2, "margin_angstrom": 4.0},
                               "train_elements": {"H": 3, "C": 2, "N": 1, "O": 2}})
    return folder


def test_inputs_predict_unet_on_fine_sad_with_an_unseen_element(unet_model_dir, tmp_path, run_cli):
    xyz = tmp_path / "hf.xyz"
    xyz.write_text("2\n\nH 0 0 0\nF 0 0 0.92\n")
    code, _, err = run_cli("predict", xyz, "-o", tmp_path / "hf.npy", "--model", unet_model_dir, "--quiet")
    assert code == 0, err
    assert "warning: hf: F never in the model's training molecules" in err
    mol, grid = place_in_box(read_molecule(str(xyz)))
    rho = np.load(tmp_path / "hf.npy")
    assert rho.sum() * grid.voxel_volume("fine") == pytest.approx(8.0, rel=1e-5)
    np.testing.assert_allclose(rho, sad_fine(mol, grid), rtol=1e-4, atol=1e-6)


def test_inputs_unet_runs_its_head_in_tiles_exactly(unet_model_dir):
    """The U-Net is not local, but its body runs on the whole box and only its local head in
    tiles: the same density as one whole-box pass (odd box sizes, tiles that do not divide)."""
    import copy

    from rhosr.inference import predict_array
    from rhosr.predict import load_predictor

    net = copy.deepcopy(load_predictor(unet_model_dir)[0])  # the loaded model is cached: not that one
    assert net.head_tiled and not net.local and net.config.tile_halo == 2
    random_weights(net.trunk, seed=5)  # a head that is not zero
    rng = np.random.default_rng(0)
    x = rng.random((5, 13, 11, 12)).astype(np.float32)
    fine = rng.random((26, 22, 24)).astype(np.float32)
    whole = predict_array(net, x, 8.0, 0.01, fine=fine)
    for tile in (4, 5, 7):
        tiled = predict_array(net, x, 8.0, 0.01, tile=tile, fine=fine)
        np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6 * whole.max())
    cbrt = build_model(dataclasses.replace(net.config, input_transform="cbrt")).eval()
    cbrt.load_state_dict(net.state_dict())  # the same weights, reading the inputs' cube root
    whole_cbrt = predict_array(cbrt, x, 8.0, 0.01, fine=fine)
    assert not np.allclose(whole_cbrt, whole)
    np.testing.assert_allclose(predict_array(cbrt, x, 8.0, 0.01, tile=5, fine=fine), whole_cbrt,
                               rtol=1e-5, atol=1e-6 * whole_cbrt.max())
    scaled = build_model(dataclasses.replace(net.config, output_scale=0.01)).eval()
    scaled.load_state_dict(net.state_dict())  # the same weights, their output worth 0.01 e/Bohr^3
    whole_scaled = predict_array(scaled, x, 8.0, 0.01, fine=fine)
    assert not np.allclose(whole_scaled, whole)
    np.testing.assert_allclose(predict_array(scaled, x, 8.0, 0.01, tile=5, fine=fine), whole_scaled,
                               rtol=1e-5, atol=1e-6 * whole_scaled.max())
    with pytest.raises(InputError, match="takes 5 input channel"):
        predict_array(net, np.ones((12, 12, 12), np.float32), 8.0, 0.01)
    instance = build_model({"trunk": {"name": "srresnet", "num_feat": 4, "num_block": 1}})
    with pytest.raises(InputError, match="instance norm"):
        predict_array(instance, np.ones((12, 12, 12), np.float32), 8.0, 0.01, tile=6)
    unet_instance = build_model({"trunk": {"name": "unet", "channels": [4, 6], "norm": "instance"}})
    assert not unet_instance.head_tiled  # its head's instance norm sees the whole box
    with pytest.raises(InputError, match="instance norm"):
        predict_array(unet_instance, np.ones((12, 12, 12), np.float32), 8.0, 0.01, tile=6)


def test_inputs_dataset_builds_the_model_inputs_and_fine_base(tiny_store):
    from rhosr.data import DensityDataset
    from rhosr.grid import Grid
    from rhosr.inputs import entry_molecule
    from rhosr.store import DatasetStore

    config = model_config(UNET_FINE)
    dataset = DensityDataset(str(tiny_store), "train", model=config)
    item = dataset[0]
    store = DatasetStore.open(tiny_store)
    entry = store.read_entry(item["id"])
    grid = Grid.from_dict(entry.meta["grid"])
    assert item["inputs"].shape == (5, *grid.coarse_mesh)
    assert torch.equal(item["inputs"][0], torch.as_tensor(entry.sad, dtype=torch.float32))  # stored
    mol = entry_molecule(entry.meta)
    fine = sad_fine(mol, grid)
    np.testing.assert_allclose(item["fine"][0].numpy(), fine, rtol=1e-5, atol=1e-7)
    assert item["label"].shape == item["fine"].shape == (1, *grid.fine_mesh)
    assert item["id"] in dataset._computed  # computed once, kept for the next epoch
    again = dataset[0]
    assert torch.equal(again["inputs"], item["inputs"]) and torch.equal(again["fine"], item["fine"])
    uncached = DensityDataset(str(tiny_store), "train", model=config, cache_bytes=0)  # cache_gb: 0
    assert torch.equal(uncached[0]["fine"], item["fine"]) and not uncached._computed
    cropped = DensityDataset(str(tiny_store), "train", model=config, crop=6, augment=True)[0]
    assert cropped["inputs"].shape == (5, 6, 6, 6) and cropped["fine"].shape == (1, 12, 12, 12)
    assert cropped["label"].shape == (1, 12, 12, 12)


@pytest.mark.parametrize("inputs", [["sad"], ["sad", "sad_atrocious"]])
def test_inputs_dataset_crop_is_the_crop_of_the_whole_box(inputs, tiny_store):
    """A crop read chunk-wise from the store (stored inputs) or cut from computed inputs equals
    the same periodic crop of the whole box (the tiny store holds no atrocious SAD: computed)."""
    from rhosr.data import DensityDataset, periodic_crop

    config = model_config({"inputs": inputs, "trunk": {"name": "srresnet", "norm": "none"}})
    whole = DensityDataset(str(tiny_store), "train", model=config)[1]
    cropped = DensityDataset(str(tiny_store), "train", model=config, crop=7, seed=3)
    crop = cropped[1]
    mesh = whole["inputs"].shape[1:]
    rng = cropped.draws(1, 0)  # the generator behind item 1's crop in epoch 0
    start = tuple(int(rng.integers(n)) for n in mesh)
    assert crop["inputs"].shape == (len(inputs), 7, 7, 7)
    size = (7, 7, 7)
    expected = periodic_crop(whole["inputs"].numpy(), start, size)
    np.testing.assert_array_equal(crop["inputs"].numpy(), expected)
    label = periodic_crop(whole["label"].numpy(), start, size, 2)
    np.testing.assert_array_equal(crop["label"].numpy(), label)


def test_inputs_evaluate_a_unet_model_on_a_store(unet_model_dir, tiny_store):
    from rhosr.evaluation import evaluate_store
    from rhosr.grid import Grid
    from rhosr.inputs import entry_molecule
    from rhosr.metrics import err_rho
    from rhosr.store import DatasetStore

    results, _ = evaluate_store(str(tiny_store), "validation", unet_model_dir, progress=False)
    assert len(results) == 1
    store = DatasetStore.open(tiny_store)
    entry = store.read_entry(results[0].id)
    grid = Grid.from_dict(entry.meta["grid"])
    fine_sad = sad_fine(entry_molecule(entry.meta), grid)  # what the untrained model returns
    expected = err_rho(fine_sad, entry.label, grid.voxel_volume("fine"), entry.meta["n_electrons"])
    assert results[0].err_model == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_inputs_train_a_unet_on_fine_sad_then_predict(tiny_store, tmp_path):
    import yaml

    from rhosr.checkpoint import load_model
    from rhosr.cli import main

    config = tmp_path / "unet.yaml"
    config.write_text(yaml.safe_dump({"model": UNET_FINE, "lr": 1e-3, "epochs": 2, "log_every_n_steps": 1}))
    assert main(["train", "--store", str(tiny_store), "--config", str(config), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    model, meta = load_model(tmp_path / "run" / "best")
    assert meta["model"] == model_config(UNET_FINE).to_dict()
    assert json.loads((tmp_path / "run" / "best" / "model.json").read_text())["train_elements"] == {
        "F": 1, "H": 2, "O": 1}
    assert main(["predict", "qm9:3", "-o", str(tmp_path / "w.npy"), "--model", str(tmp_path / "run" / "best"),
                 "--quiet"]) == 0


def test_inputs_predict_tiles_a_unet_under_a_memory_budget(unet_model_dir):
    """A budget too small for the whole box picks head tiles; the density is the whole box's."""
    from rhosr.predict import predict

    mol = read_molecule("qm9:3")
    whole = predict(mol, unet_model_dir)
    tiled = predict(mol, unet_model_dir, max_memory_gb=0.002)
    assert whole.timings["tile"] is None and tiled.timings["tile"] is not None
    assert tiled.timings["tile"] < min(tiled.grid.coarse_mesh)
    np.testing.assert_allclose(tiled.density, whole.density, rtol=1e-5, atol=1e-6 * whole.density.max())


def test_inputs_group_channels_are_the_element_channels_on_qm9_and_take_group_mates():
    """sad_groups [1, 14, 15, 16, 17] equals sad_elements [H, C, N, O, F] on a QM9 molecule; on
    a molecule with S (never in QM9) the S atom goes where O went, and the channels still sum
    to the whole SAD."""
    from rhosr.inputs import periodic_group

    qm9 = ["H", "C", "N", "O", "F"]
    elements = model_config({"inputs": ["sad", {"name": "sad_elements", "elements": qm9}]})
    groups = model_config({"inputs": ["sad", {"name": "sad_groups", "groups": [1, 14, 15, 16, 17]}]})
    mol, grid = place_in_box(read_molecule("qm9:21976"))  # C3H2N2O3
    np.testing.assert_array_equal(build_model(groups).build_inputs(mol, grid),
                                  build_model(elements).build_inputs(mol, grid))
    thiophene, grid = place_in_box(Molecule(Atoms("SC4H4", [(0, 0, 0), (1.2, 0.9, 0), (-1.2, 0.9, 0),
                                                            (0.7, 2.2, 0), (-0.7, 2.2, 0), (2.2, 0.4, 0),
                                                            (-2.2, 0.4, 0), (1.3, 3.1, 0), (-1.3, 3.1, 0)]),
                                            name="thiophene"))
    x = build_model(groups).build_inputs(thiophene, grid)
    assert x.shape[0] == 6 and x[4].any() and not x[3].any() and not x[5].any()
    np.testing.assert_allclose(x[1:].sum(axis=0), x[0], rtol=1e-5, atol=1e-7)
    assert [periodic_group(s) for s in ("H", "Cl", "P", "Si", "Ne", "Br")] == [1, 17, 15, 14, 18, 17]
    with pytest.raises(InputError, match="sad_groups"):
        model_config({"inputs": ["sad", {"name": "sad_groups", "groups": [1, 1]}]})


def test_inputs_local_model_with_a_fine_base_tiles_exactly():
    """A local trunk on the fine-mesh SAD base: each tile reads its own window of the fine
    array (wrapping), and the stitched density is the whole box's."""
    from rhosr.inference import predict_array

    net = random_weights(build_model({"trunk": {"name": "srresnet", "num_feat": 4, "kernel_first": 3,
                                                "kernel": 3, "num_block": 1, "norm": "none"},
                                      "base": "sad_fine"}), seed=3).eval()
    rng = np.random.default_rng(1)
    x = rng.random((1, 11, 9, 10)).astype(np.float32)
    fine = rng.random((22, 18, 20)).astype(np.float32)
    whole = predict_array(net, x, 8.0, 0.01, fine=fine)
    np.testing.assert_allclose(predict_array(net, x, 8.0, 0.01, tile=4, fine=fine), whole,
                               rtol=1e-5, atol=1e-6 * whole.max())
