"""Self-describing models: weights in safetensors beside a JSON that says how to use them.

A model folder holds ``model.safetensors`` (the :class:`rhosr.model.DensityModel` state dict,
nothing executable) and ``model.json``, read strictly into a :class:`ModelDescription`:
``model`` (the :class:`rhosr.model.ModelConfig`: inputs, trunk, base), ``grid`` (upscale,
coarse and fine plane-wave spacing in Bohr, box margin in Angstrom), ``preset`` (the DFT
settings of the labels it learned), ``training`` (the training config), ``val_err``
(validation Err_rho in percent), ``validation`` (size and hash of the validation set),
``train_entries``, ``train_elements`` (element -> number of training molecules that contain
it), ``step``, ``epoch``, ``train_seconds``, ``hardware``, ``store``, ``versions`` and ``test``
(the summary of a test-set evaluation). Older files, whose ``model`` is the flat SRResNet form
with the input named in ``input``, still read.

Every failure to read a folder (a missing, truncated or damaged file, weights that do not fit
the description, a description that asks for an absurd model) is one InputError line naming
the file. Loading builds the network with :func:`rhosr.model.build_model` and nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from rhosr.errors import InputError
from rhosr.model import DensityModel, ModelConfig, build_model, model_config, upgrade_state
from rhosr.schema import typed_from_dict

WEIGHTS = "model.safetensors"
META = "model.json"
MAX_META_BYTES = 10_000_000


@dataclass(frozen=True)
class GridDescription:
    """The box rule the model was trained with."""

    upscale: int
    margin_angstrom: float = 4.0
    coarse_spacing_bohr: float | None = None
    fine_spacing_bohr: float | None = None


@dataclass(frozen=True)
class ModelDescription:
    """What ``model.json`` holds (see the module docstring); ``model`` and ``grid`` are required."""

    model: ModelConfig
    grid: GridDescription
    preset: dict | None = None
    training: dict | None = None
    val_err: float | None = None
    validation: dict | None = None
    train_entries: int | None = None
    train_elements: dict | None = None
    step: int | None = None
    epoch: int | None = None
    train_seconds: float | None = None
    hardware: str | None = None
    store: str | None = None
    versions: dict | None = None
    test: dict | None = None

    @classmethod
    def from_dict(cls, d, what: str = META) -> ModelDescription:
        if not isinstance(d, dict):
            raise InputError(f"{what}: must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        for key in ("model", "grid"):
            if key not in d:
                raise InputError(f"{what}: incomplete, no {key!r}")
        legacy_input = d.pop("input", None)
        if legacy_input is not None and not isinstance(legacy_input, str):
            raise InputError(f"{what}: input must be a string, got {legacy_input!r:.40}")
        try:
            model = model_config(d.pop("model"), legacy_input or "sad")
        except InputError as exc:
            raise InputError(f"{what}: {exc}") from None
        if legacy_input is not None and [p.name for p in model.inputs] != [legacy_input]:
            raise InputError(f"{what}: input {legacy_input!r} contradicts the model's inputs")
        desc = typed_from_dict(cls, {"model": model, **d}, what)
        grid = desc.grid
        if grid.upscale != model.upscale:
            raise InputError(f"{what}: grid upscale {grid.upscale}, but the model upscales "
                             f"x{model.upscale}")
        if not 0 <= grid.margin_angstrom <= 100:
            raise InputError(f"{what}: grid margin_angstrom must be from 0 to 100, "
                             f"got {grid.margin_angstrom}")
        return desc

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["model"] = self.model.to_dict()
        out["grid"] = dataclasses.asdict(self.grid)
        return {k: v for k, v in out.items() if v is not None}


def save_model(folder: str | os.PathLike, model: DensityModel, meta: dict) -> None:
    """Write ``model.safetensors`` and ``model.json`` (each atomically); ``meta`` is checked
    as :class:`ModelDescription` first, so what is written can be read back."""
    from safetensors.torch import save_file

    from rhosr.io import atomic_write, new_file_mode

    description = ModelDescription.from_dict({**meta, "model": model.config}, "model metadata")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / f".{WEIGHTS}.part"
    save_file(state, str(tmp))
    os.chmod(tmp, new_file_mode())  # safetensors makes it 0600
    os.replace(tmp, folder / WEIGHTS)
    with atomic_write(folder / META) as fh:
        json.dump(description.to_dict(), fh, indent=2)


def read_description(folder: str | os.PathLike) -> ModelDescription:
    """The :class:`ModelDescription` of a model folder, or a one-line InputError naming the file."""
    path = Path(folder) / META
    try:
        if path.stat().st_size > MAX_META_BYTES:
            raise InputError(f"{path}: {path.stat().st_size:,} bytes is too large for a model description")
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    return ModelDescription.from_dict(d, str(path))


def read_weights(path: str | os.PathLike) -> dict:
    """A safetensors state dict (float tensors, on the CPU), or a one-line InputError."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise InputError(f"{path}: damaged or truncated weights ({reason})") from None
    bad = [k for k, v in state.items() if not v.is_floating_point() or not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{path}: weights {bad[0]!r} are not finite numbers")
    return upgrade_state(state)


def fit_weights(model: torch.nn.Module, state: dict, source) -> None:
    """Load ``state`` into ``model``, or an InputError naming ``source`` and the first misfit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        what = (f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}" if extra else
                f"{shapes[0]!r} is {tuple(state[shapes[0]].shape)}, "
                f"the model needs {tuple(own[shapes[0]].shape)}")
        raise InputError(f"{source}: weights do not fit the model ({what})")
    model.load_state_dict(state)


def load_model(folder: str | os.PathLike, device: str = "cpu") -> tuple[DensityModel, dict]:
    """The model of a folder written by :func:`save_model`, in eval mode, and its metadata
    (:meth:`ModelDescription.to_dict`)."""
    folder = Path(folder)
    if not (folder / META).exists() or not (folder / WEIGHTS).exists():
        raise InputError(f"{folder}: not a rhosr model folder ({META} + {WEIGHTS})")
    description = read_description(folder)
    try:
        model = build_model(description.model)
    except InputError as exc:
        raise InputError(f"{folder / META}: {exc}") from None
    fit_weights(model, read_weights(folder / WEIGHTS), folder / WEIGHTS)
    return model.to(device).eval(), description.to_dict()


def load_weights_into(model: DensityModel, source: str | os.PathLike) -> None:
    """Initialise ``model`` from a model folder, a shipped model's name (``qm9-small``) or a
    Lightning ``.ckpt`` (fine-tuning)."""
    source = Path(source)
    if not source.exists() and source.suffix != ".ckpt":
        from rhosr.predict import model_folder

        source = model_folder(str(source))  # a shipped model's name, or a one-line error
    if source.is_dir():
        trained, _ = load_model(source)
        state = trained.state_dict()
    elif source.suffix == ".ckpt":
        state = read_lightning_weights(source)
    else:
        raise InputError(f"{source}: --init takes a model folder, a shipped model's name or a .ckpt")
    own = model.state_dict()
    if set(state) == set(own) and any(state[k].shape != own[k].shape for k in own):
        state = widen_state(state, own, source)
    fit_weights(model, state, source)


def read_lightning_weights(path: Path) -> dict:
    """The network weights of a Lightning checkpoint (read without unpickling code)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        weights = ckpt["state_dict"]
        state = {k.removeprefix("model."): v for k, v in weights.items()}
    except Exception as exc:  # a damaged file raises pickle, zip or key errors
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise InputError(f"{path}: not a readable training checkpoint ({reason:.200})") from None
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a training checkpoint of a rhosr model")
    return upgrade_state(state)


def widen_state(old: dict, new: dict, source: str | os.PathLike = "weights") -> dict:
    """Weights of a trained model carried into a wider one (more ``num_feat``), computing the
    same function: every tensor's leading block is the trained one; in convolution weights the
    trained output channels ignore the added input channels (zeros there); the added output
    channels keep ``new``'s fresh initialisation. The added features therefore never reach the
    output until training moves those zeros, and training continues from where it stood
    (function-preserving widening, as in Net2Net, Chen et al. 2016). Channel ``c*8 + s`` of an
    upsampling convolution is sub-voxel ``s`` of feature ``c``, so trained features stay leading
    there too. Any other difference (layers, kernel sizes) is an error."""
    if set(old) != set(new):
        missing = sorted(set(old) ^ set(new))[:3]
        raise InputError(f"{source}: cannot widen: the layers differ ({', '.join(missing)}); "
                         "only num_feat may grow")
    out = {}
    for key, target in new.items():
        trained = old[key]
        if trained.dim() != target.dim() or any(a > b for a, b in zip(trained.shape, target.shape)):
            raise InputError(f"{source}: cannot widen {key} from {tuple(trained.shape)} to "
                             f"{tuple(target.shape)}; only num_feat may grow")
        widened = target.clone()
        if trained.dim() == 5:
            widened[: trained.shape[0], trained.shape[1]:] = 0
        widened[tuple(slice(0, n) for n in trained.shape)] = trained
        out[key] = widened
    return out
