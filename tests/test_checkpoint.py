"""Model folders are read strictly: a damaged, truncated, mis-shaped or absurd model folder is
one error line naming the file, in every command that reads one; the shipped model still
loads; a property-based fuzz of the readers finds nothing but InputError."""

import json
import shutil

import pytest
import torch

from rhosr.checkpoint import META, WEIGHTS, load_model, read_description, save_model
from rhosr.errors import InputError


def _damage(folder, case):
    """Damage a copy of a model folder in one way."""
    meta_path, weights_path = folder / META, folder / WEIGHTS
    meta = json.loads(meta_path.read_text())
    if case == "truncated json":
        meta_path.write_text(meta_path.read_text()[:100])
    elif case == "binary json":
        meta_path.write_bytes(b"\xff\xfe\x00garbage")
    elif case == "json list":
        meta_path.write_text("[1, 2]")
    elif case == "no grid":
        meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "grid"}))
    elif case == "unknown key":
        meta_path.write_text(json.dumps({**meta, "colour": "blue"}))
    elif case == "wrong type":
        meta_path.write_text(json.dumps({**meta, "val_err": "low"}))
    elif case == "absurd channels":
        meta["model"]["trunk"]["num_feat"] = 10**6
        meta_path.write_text(json.dumps(meta))
    elif case == "terabytes":
        meta["model"]["trunk"].update(num_feat=1024, num_block=1000, kernel=15)
        meta_path.write_text(json.dumps(meta))
    elif case == "truncated weights":
        weights_path.write_bytes(weights_path.read_bytes()[:500])
    elif case == "mis-shaped weights":
        meta["model"]["trunk"]["num_feat"] += 1
        meta_path.write_text(json.dumps(meta))
    elif case == "nan weights":
        from safetensors.torch import load_file, save_file

        state = load_file(str(weights_path))
        next(iter(state.values())).fill_(float("nan"))
        save_file(state, str(weights_path))
    elif case == "no weights":
        weights_path.unlink()
    else:
        raise ValueError(case)


CASES = {
    "truncated json": "model.json: not valid JSON",
    "binary json": "model.json: cannot be read",
    "json list": "model.json: must be a JSON object",
    "no grid": "model.json: incomplete, no 'grid'",
    "unknown key": "model.json: unknown keys colour",
    "wrong type": "model.json: val_err: must be a number",
    "absurd channels": "model.json: model config: srresnet num_feat must be from 1 to 1024",
    "terabytes": "parameters",
    "truncated weights": "model.safetensors: damaged or truncated weights",
    "mis-shaped weights": "model.safetensors: weights do not fit the model",
    "nan weights": "are not finite numbers",
    "no weights": "not a rhosr model folder",
}


@pytest.fixture
def damaged(tiny_model_dir, tmp_path):
    def make(case):
        folder = tmp_path / case.replace(" ", "_")
        shutil.copytree(tiny_model_dir, folder)
        _damage(folder, case)
        return folder
    return make


@pytest.mark.parametrize("case", CASES)
def test_checkpoint_damaged_folder_is_one_line_error_naming_the_file(case, damaged):
    folder = damaged(case)
    with pytest.raises(InputError) as info:
        load_model(folder)
    message = str(info.value)
    assert CASES[case] in message and str(folder) in message and "\n" not in message


@pytest.mark.parametrize("case", CASES)
def test_checkpoint_predict_cli_refuses_a_damaged_model(case, damaged, run_cli, tmp_path):
    folder = damaged(case)
    code, out, err = run_cli("predict", "qm9:3", "-o", tmp_path / "w.cube", "--model", folder, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("rhosr predict: error:") and CASES[case] in err and str(folder) in err
    assert not (tmp_path / "w.cube").exists()


@pytest.mark.parametrize("case", ["truncated json", "truncated weights", "terabytes"])
def test_checkpoint_every_command_refuses_a_damaged_model(case, damaged, run_cli, tiny_store, tmp_path):
    folder = damaged(case)
    commands = {
        "onestep": ("onestep", "qm9:3", "--model", folder, "--preset", "tiny"),
        "scf": ("scf", "qm9:3", "--model", folder, "--preset", "tiny"),
        "evaluate": ("evaluate", "--store", tiny_store, "--split", "validation", "--model", folder,
                     "-o", tmp_path / "report"),
        "train": ("train", "--store", tiny_store, "--config", "tiny", "--init", folder,
                  "--out", tmp_path / "run", "--no-progress"),
    }
    for name, argv in commands.items():
        code, _, err = run_cli(*argv)
        assert code == 2, (name, err)
        assert err.startswith(f"rhosr {name}: error:") and len(err.strip().splitlines()) == 1, err
        assert CASES[case] in err and str(folder) in err, (name, err)
    assert not (tmp_path / "run").exists()  # nothing written by train
    assert not any((tmp_path / "report").glob("*"))  # evaluate made its (empty) folder only


def test_checkpoint_shipped_model_description_reads_and_round_trips(tmp_path):
    """The shipped qm9-small (old flat model form, input named apart) reads into the new
    description; saved again, it reads back the same and predicts the same."""
    from rhosr.predict import model_folder

    folder = model_folder("qm9-small")
    old = json.loads((folder / META).read_text())
    assert "num_feat" in old["model"] and old["input"] == "sad"  # the old form, as shipped
    description = read_description(folder)
    assert description.model.trunk.name == "srresnet" and description.model.base.name == "sad_linear"
    assert description.train_elements == old["train_elements"] and description.test == old["test"]
    model, meta = load_model(folder)
    save_model(tmp_path / "again", model, meta)
    again, meta_again = load_model(tmp_path / "again")
    assert meta_again == meta
    x = torch.rand(1, 1, 6, 7, 8)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


# -- property-based fuzz of the readers -------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True)
    | st.text(max_size=8) | st.sampled_from(["sad", "srresnet", "unet", "none", "sad_fine", "instance"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "num_feat", "channels", "trunk", "inputs", "base", "upscale", "elements",
                         "norm", "kernel", "num_block", "grid", "model", "x"]) | st.text(max_size=4),
        children, max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    """Every key path of a nested JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replace(value, path, new):
    if not path:
        return new
    value = json.loads(json.dumps(value))
    target = value
    for key in path[:-1]:
        target = target[key]
    if new is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return value


_DELETE = object()


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("fuzz") / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


@hypothesis.settings(max_examples=150, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=st.data())
def test_checkpoint_fuzzed_model_json_reads_or_is_an_input_error(data, fuzz_folder, tiny_model_dir):
    """A model.json with any one value replaced or deleted (or any JSON at all) loads or is an
    InputError: never another exception."""
    valid = json.loads((tiny_model_dir / META).read_text())
    if data.draw(st.booleans()):
        paths = list(_paths(valid))
        path = data.draw(st.sampled_from(paths))
        new = data.draw(JSON | st.just(_DELETE)) if path else data.draw(JSON)
        meta = _replace(valid, path, new)
    else:
        meta = data.draw(JSON)
    (fuzz_folder / META).write_text(json.dumps(meta))
    shutil.copy(tiny_model_dir / WEIGHTS, fuzz_folder / WEIGHTS)
    try:
        load_model(fuzz_folder)
    except InputError as exc:
        assert "\n" not in str(exc)


@hypothesis.settings(max_examples=60, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(cut=st.integers(0, 10**6),
                  flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
def test_checkpoint_fuzzed_weights_read_or_are_an_input_error(cut, flips, fuzz_folder, tiny_model_dir):
    """Weights truncated anywhere or with bytes changed anywhere load or are an InputError."""
    shutil.copy(tiny_model_dir / META, fuzz_folder / META)
    raw = bytearray((tiny_model_dir / WEIGHTS).read_bytes())
    raw = raw[: cut % (len(raw) + 1)]
    for position, byte in flips:
        if raw:
            raw[position % len(raw)] = byte
    (fuzz_folder / WEIGHTS).write_bytes(bytes(raw))
    try:
        load_model(fuzz_folder)
    except InputError as exc:
        assert "\n" not in str(exc)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(config=st.dictionaries(
    st.sampled_from(["inputs", "trunk", "base", "num_feat", "kernel", "num_block", "norm", "residual_sad",
                     "x"]), JSON, max_size=4))
def test_checkpoint_fuzzed_model_config_parses_or_is_an_input_error(config):
    """Any model config mapping parses into a ModelConfig or is a one-line InputError."""
    from rhosr.model import model_config

    try:
        parsed = model_config(config)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        assert model_config(parsed.to_dict()) == parsed
