"""The model as a composition, built in one place from its saved config:

    inputs (coarse channels) -> trunk -> + base -> ReLU -> rescale to N_e

Tensors are ``(B, C, X, Y, Z)``: the inputs on the coarse mesh (e/Bohr^3, one or more
channels), the output on the fine mesh, ``upscale`` times larger per axis.

- ``inputs``: named channel builders (:mod:`rhosr.inputs`: ``sad``, ``sad_atrocious``,
  ``sad_elements``); the number of input channels follows from the list.
- ``trunk``: an architecture from :mod:`rhosr.trunks` (``srresnet``, the paper's and the
  default; ``unet``); it tells its upscale, receptive radius, locality and memory per voxel.
- ``base``: what the trunk's output is added to (:mod:`rhosr.bases`: ``none``, ``sad_linear``,
  ``sad_fine``, ``fitted_prior``). With a base other than ``none`` the trunk's last layer
  starts at zero, so an untrained model returns its base.

The config (``model`` in a training config and in ``model.json``)::

    model:
      inputs: [sad, {name: sad_elements, elements: [H, C, N, O, F]}]
      trunk: {name: unet, channels: [16, 32, 64], blocks: 1, kernel: 3, num_up: 1}
      base: sad_fine

``input_transform`` (``none``, ``cbrt``) is what the trunk reads of the inputs, ``output_scale``
(e/Bohr^3, default 1) what one unit of its output is worth. An entry is a name or a mapping
with ``name`` and that part's options. The older flat form, ``{num_feat, kernel_first, kernel,
num_block, num_up, norm, residual_sad}`` with the input named apart, still reads: it is an
``srresnet`` trunk, base ``sad_linear`` when ``residual_sad`` else ``none``. This module
imports neither PySCF nor ASE.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from rhosr.bases import BASES, get_base
from rhosr.errors import InputError
from rhosr.inputs import INPUTS, NoOptions, get_input
from rhosr.layers import (  # noqa: F401  (re-exported: the building blocks lived here)
    CPU_SLABS,
    NORMS,
    PeriodicConv3d,
    ResidualBlock,
    Upsample,
    _conv_in_slabs,
    _conv_one_channel_side,
    circular_pad,
    make_norm,
    normalize,
    pixel_shuffle_3d,
    upsample_linear,
)
from rhosr.schema import shown, typed_from_dict
from rhosr.trunks import TRUNKS, get_trunk
from rhosr.trunks.srresnet import SRResNet3D, SRResNetOptions  # noqa: F401

MAX_PARAMETERS = 200_000_000
"""Models with more parameters (0.8 GB in float32; the paper's x4 model has 16 M) are refused
before anything is allocated."""

INPUT_TRANSFORMS = ("none", "cbrt")
"""What the trunk reads of the inputs: ``none``, the densities as they are (the paper's); ``cbrt``,
their cube root. QM9 inputs are ~0.003 e/Bohr^3 on average and up to ~1 near nuclei, so the
trunk's first features are tiny next to its biases; the cube root maps the inputs to ~0.1-1.
The base always reads the inputs as they are."""

OUTPUT_SCALE_RANGE = (1e-9, 1e3)
"""Allowed ``output_scale`` (e/Bohr^3)."""

LEGACY_KEYS = ("num_feat", "kernel_first", "kernel", "num_block", "num_up", "norm", "residual_sad")


@dataclass(frozen=True)
class Part:
    """One registered part (an input, the trunk or the base): its name and typed options."""

    name: str
    options: object = field(default_factory=NoOptions)

    def to_dict(self) -> dict:
        options = {k: list(v) if isinstance(v, tuple) else v
                   for k, v in dataclasses.asdict(self.options).items()}
        return {"name": self.name, **options}


def _part(value, getter, what: str) -> Part:
    """A part from its config entry: a name, or a mapping with ``name`` and options."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise InputError(f"model config: each {what} is a name or a mapping with a name, got {value!r:.60}")
    options = {k: v for k, v in value.items() if k != "name"}
    cls = getter(value["name"])
    return Part(value["name"], typed_from_dict(cls.Options, options, f"model config: {what} {value['name']}"))


@dataclass(frozen=True)
class ModelConfig:
    """The model's description: input builders, trunk and base (see the module docstring)."""

    inputs: tuple[Part, ...] = (Part("sad"),)
    trunk: Part = field(default_factory=lambda: Part("srresnet", SRResNetOptions()))
    base: Part = field(default_factory=lambda: Part("none"))
    input_transform: str = "none"  # see INPUT_TRANSFORMS
    output_scale: float = 1.0
    """e/Bohr^3 per unit of the trunk's output: the trunk's output times this is what is added to
    the base. 1 (the default, every shipped model) leaves it as it is. Against a fitted prior the
    residual is ~6e-4 e/Bohr^3 (rms, QM9): unscaled, a qm9-unet trunk could not fit one
    molecule's residual; scaled by 1e-3 it did (``benchmarks/trunk_residual_probe.py``). The
    likely reason, not measured: Adam's steps are a fixed size per weight, large next to
    weights that must produce outputs this small."""

    def __post_init__(self):
        scale = self.output_scale
        lo, hi = OUTPUT_SCALE_RANGE
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not lo <= scale <= hi:
            raise InputError(f"model config: output_scale must be a number in [{lo:g}, {hi:g}] "
                             f"(e/Bohr^3), got {scale!r:.40}")
        object.__setattr__(self, "output_scale", float(scale))
        if self.input_transform not in INPUT_TRANSFORMS:
            raise InputError(f"model config: input_transform must be one of {', '.join(INPUT_TRANSFORMS)}, "
                             f"got {self.input_transform!r:.40}")
        if not self.inputs:
            raise InputError("model config: inputs is empty; the model needs at least one input")
        first = INPUTS[self.inputs[0].name]
        if BASES[self.base.name].needs_sad and not first.is_sad:
            raise InputError(f"model config: base {self.base.name} builds on the SAD, so the first "
                             f"input must be sad or sad_atrocious, not {self.inputs[0].name}")

    # -- what the rest of the code asks ---------------------------------------------------
    @property
    def builders(self) -> list:
        return [INPUTS[p.name](p.options) for p in self.inputs]

    @property
    def in_channels(self) -> int:
        return sum(b.channels for b in self.builders)

    @property
    def upscale(self) -> int:
        return self.trunk.options.upscale

    @property
    def num_up(self) -> int:
        return self.trunk.options.num_up

    @property
    def local(self) -> bool:
        """True when tiles and crops are exact (the output at a point depends only on inputs
        within :attr:`halo`, through the same function everywhere)."""
        return self.trunk.options.local

    @property
    def halo(self) -> int:
        """Coarse voxels on each side that one output point depends on (trunk and base)."""
        return self.trunk.options.receptive_radius + BASES[self.base.name].halo

    receptive_radius = halo

    @property
    def needs_fine(self) -> bool:
        """Whether the base reads a fine-mesh array (the SAD on the fine mesh)."""
        return BASES[self.base.name].needs_fine

    def build_fine(self, mol, grid):
        """The fine-mesh array ``(uX, uY, uZ)`` float32 the base reads (e/Bohr^3), or None if
        it reads none; ``mol`` placed in ``grid``'s box."""
        if not self.needs_fine:
            return None
        return BASES[self.base.name].fine_array(self.base.options, self.builders, mol, grid)

    @property
    def bytes_per_voxel(self) -> float:
        """Peak memory of one float32 forward pass per coarse voxel (bytes, an estimate)."""
        fine = 4 * 2 * self.upscale**3 if self.needs_fine else 0
        return self.trunk.options.bytes_per_voxel(self.in_channels) + fine

    # -- tiling ---------------------------------------------------------------------------
    @property
    def head_tiled(self) -> bool:
        """True when a box too large for memory runs the trunk's body whole and only its local
        head in tiles (a trunk that is not local but has ``body``/``head``, e.g. the U-Net);
        False when the whole model is tiled (local) or cannot be."""
        options = self.trunk.options
        # a head with instance norm sees the whole box: then it cannot be tiled either
        return (not self.local and hasattr(options, "head_radius")
                and getattr(options, "norm", "none") == "none")

    @property
    def tileable(self) -> bool:
        return self.local or self.head_tiled

    @property
    def tile_halo(self) -> int:
        """Coarse voxels read around each tile: the model's halo, or the head's radius."""
        return self.trunk.options.head_radius if self.head_tiled else self.halo

    @property
    def tile_bytes_per_voxel(self) -> float:
        """Memory per coarse voxel of a tile: the whole model's, or the head's."""
        return self.trunk.options.head_bytes_per_voxel() if self.head_tiled else self.bytes_per_voxel

    @property
    def untiled_bytes_per_voxel(self) -> float:
        """Memory per coarse voxel of the whole box that tiling does not bound: the body's and
        the base's fine array (head tiling), else nothing."""
        if not self.head_tiled:
            return 0.0
        fine = 4 * 2 * self.upscale**3  # the base and the stitched output on the fine mesh
        return self.trunk.options.body_bytes_per_voxel(self.in_channels) + fine

    def describe(self) -> str:
        """One line: trunk and options, base, inputs."""
        opts = ", ".join(f"{k} {v}" for k, v in self.trunk.to_dict().items() if k != "name")
        n = self.in_channels
        transform = "" if self.input_transform == "none" else f", {self.input_transform} of"
        scale = "" if self.output_scale == 1 else f" x {self.output_scale:g}"
        return (f"{self.trunk.name} ({opts}){scale}, base {self.base.name}, "
                f"inputs{transform} {' + '.join(p.name for p in self.inputs)} ({n} channel{'s' * (n > 1)})")

    # -- reading and writing ------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"inputs": [p.to_dict() for p in self.inputs], "trunk": self.trunk.to_dict(),
             "base": self.base.to_dict()}
        if self.input_transform != "none":  # absent in the description of a model without one
            d["input_transform"] = self.input_transform
        if self.output_scale != 1:  # likewise
            d["output_scale"] = self.output_scale
        return d

    @classmethod
    def from_dict(cls, d, input_name: str = "sad") -> ModelConfig:
        """From the config mapping (strict). ``input_name`` is the old separate ``input`` key,
        used by the old flat form only."""
        if not isinstance(d, dict):
            raise InputError(f"model config: must be a mapping, got {type(d).__name__}")
        keys = {"inputs", "trunk", "base", "input_transform", "output_scale"}
        if not set(d) & keys:
            return cls.from_legacy(d, input_name)
        unknown = sorted(shown(k) for k in set(d) - keys)
        if unknown:
            raise InputError(f"model config: unknown keys {', '.join(unknown)} "
                             "(trunk options go inside trunk: {name: ..., ...})")
        inputs = d.get("inputs", ["sad"])
        if not isinstance(inputs, list) or not inputs:
            raise InputError("model config: inputs must be a non-empty list, e.g. [sad]")
        names = [p if isinstance(p, str) else p.get("name") if isinstance(p, dict) else None for p in inputs]
        if len(set(map(str, names))) != len(names):
            raise InputError("model config: an input is listed twice")
        return cls(tuple(_part(p, get_input, "input") for p in inputs),
                   _part(d.get("trunk", "srresnet"), get_trunk, "trunk"),
                   _part(d.get("base", "none"), get_base, "base"), d.get("input_transform", "none"),
                   d.get("output_scale", 1.0))

    @classmethod
    def from_legacy(cls, d: dict, input_name: str = "sad") -> ModelConfig:
        """The flat SRResNet form: ``{num_feat, ..., norm, residual_sad}`` and the input's name."""
        unknown = sorted(shown(k) for k in set(d) - set(LEGACY_KEYS))
        if unknown:
            raise InputError(f"model config: unknown keys {', '.join(unknown)}")
        options = {k: v for k, v in d.items() if k != "residual_sad"}
        residual = d.get("residual_sad", False)
        if not isinstance(residual, bool):
            raise InputError(f"model config: residual_sad must be true or false, got {residual!r:.40}")
        return cls((_part(input_name, get_input, "input"),),
                   Part("srresnet", typed_from_dict(SRResNetOptions, options, "model config")),
                   Part("sad_linear" if residual else "none"))


def model_config(value, input_name: str = "sad") -> ModelConfig:
    """A :class:`ModelConfig` from itself or its mapping (new or old flat form)."""
    return value if isinstance(value, ModelConfig) else ModelConfig.from_dict(value, input_name)


def _legacy_state_hook(module, state_dict, prefix, *args) -> None:
    """Weights saved before the composition had the SRResNet's keys at the top
    (``conv_first.weight``): they are the trunk's (``trunk.conv_first.weight``)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        if not rest.startswith(("trunk.", "base.")):
            state_dict[f"{prefix}trunk.{rest}"] = state_dict.pop(key)


def upgrade_state(state: dict) -> dict:
    """A state dict with the old top-level SRResNet keys moved under ``trunk.``."""
    state = dict(state)
    _legacy_state_hook(None, state, "")
    return state


class DensityModel(nn.Module):
    """Coarse inputs ``(B, C, X, Y, Z)`` -> fine density ``(B, 1, uX, uY, uZ)``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.builders = config.builders
        self.trunk = TRUNKS[config.trunk.name](config.trunk.options, config.in_channels)
        self.base = BASES[config.base.name](config.base.options)
        if config.base.name != "none":  # start from the base itself
            self.trunk.zero_output()
        self.register_load_state_dict_pre_hook(_legacy_state_hook)

    # what tiling, crops and training ask of the model
    @property
    def upscale(self) -> int:
        return self.config.upscale

    @property
    def halo(self) -> int:
        return self.config.halo

    @property
    def local(self) -> bool:
        return self.config.local

    @property
    def bytes_per_voxel(self) -> float:
        return self.config.bytes_per_voxel

    @property
    def needs_fine(self) -> bool:
        return self.config.needs_fine

    @property
    def head_tiled(self) -> bool:
        return self.config.head_tiled

    @property
    def tileable(self) -> bool:
        return self.config.tileable

    def describe(self) -> str:
        return self.config.describe()

    def trunk_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the trunk reads of the coarse inputs ``x`` (``config.input_transform``)."""
        if self.config.input_transform == "cbrt":
            return x.clamp(min=0).pow(1 / 3)
        return x

    def scale_output(self, y: torch.Tensor) -> torch.Tensor:
        """The trunk's output ``y`` in e/Bohr^3 (``config.output_scale``)."""
        return y if self.config.output_scale == 1 else y * self.config.output_scale

    def build_inputs(self, mol, grid):
        """The coarse input ``(C, X, Y, Z)`` float32 of a molecule placed in ``grid``'s box."""
        from rhosr.inputs import model_inputs

        return model_inputs(self.builders, mol, grid)

    def build_fine(self, mol, grid):
        """The fine-mesh array ``(uX, uY, uZ)`` the base reads, or None if it reads none."""
        return self.config.build_fine(mol, grid)

    def forward(
        self, x: torch.Tensor, n_electrons: torch.Tensor | None = None,
        voxel_volume: torch.Tensor | None = None, fine: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n_electrons`` and ``voxel_volume`` (fine voxel, Bohr^3) are ``(B,)``; without them
        the output is not rescaled. ``fine`` ``(B, 1, uX, uY, uZ)``: the base's fine array."""
        out = self.scale_output(self.trunk(self.trunk_input(x)))
        base = self.base(x, fine, self.config.num_up)
        if base is not None:
            out = out + base
        out = F.relu(out)
        if n_electrons is None or voxel_volume is None:
            return out
        return normalize(out, n_electrons, voxel_volume)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_size(config: ModelConfig) -> int:
    """The parameter count of ``config``'s model, counted on PyTorch's meta device (nothing
    allocated); an InputError beyond :data:`MAX_PARAMETERS`."""
    state = torch.random.get_rng_state()
    with torch.device("meta"):
        n = count_parameters(DensityModel(config))
    torch.random.set_rng_state(state)
    if n > MAX_PARAMETERS:
        raise InputError(f"model config: {n:,} parameters ({4 * n / 1e9:,.0f} GB) is more than the "
                         f"{MAX_PARAMETERS:,} this package builds; use fewer channels or blocks")
    return n


def build_model(config: ModelConfig | dict, input_name: str = "sad") -> DensityModel:
    """The one place a model is built from its config (training and inference alike)."""
    config = model_config(config, input_name)
    check_size(config)
    return DensityModel(config)
