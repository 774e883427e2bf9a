"""Training with PyTorch Lightning: the paper's recipe, checkpoints that describe themselves.

Recipe (paper SI section 2): loss = integral |rho_pred - rho_ref| / N_e; Adam with betas
(0.9, 0.99); the first epoch at ``lr * warmup_factor`` (1e-5), then cosine decay to zero over
the remaining steps; batch size 1 (boxes differ in size) with optional gradient
accumulation; random proper 90-degree rotations (:mod:`rhosr.data`); the checkpoint with the
lowest validation Err_rho is the result. Beyond the paper: ``warmup_shape: linear`` ramps the
learning rate from ``lr * warmup_factor`` to ``lr`` over the warm-up instead of holding it,
``gradient_clip_val`` clips the gradient norm (Lightning's clipping), and ``ema_decay`` keeps an
exponential moving average of the weights (Lightning's ``WeightAveraging``), which is what is
validated, exported as the best model and saved as the checkpoint's weights (the raw weights
travel beside it, so ``--resume`` continues both). ``loss_delta`` (e/Bohr^3) trains on a Huber
loss instead of the L1 (:func:`objective_loss`); ``train_err`` still logs Err_rho.

Optional crops: ``crop`` coarse points per axis, read with periodic wrap; the loss is taken
on the core of the crop only, ``crop_halo`` coarse voxels away from its faces (by default the
convolutional receptive radius of the model), and the prediction is not rescaled (the
electron count of a crop is unknown). Validation always runs on whole boxes.

A run folder holds: ``config.yaml`` (copied), ``checkpoints/last.ckpt`` (Lightning, for
``--resume``: optimizer, scheduler, epoch and the position inside it), ``best/`` (weights in
safetensors + JSON, the self-describing model that :func:`rhosr.checkpoint.load_model` reads),
``metrics.csv``, TensorBoard logs and ``learning_curve.png``.

A resumed run is the run it was: a config that changes it is refused (:data:`RESUME_SAFE_KEYS`
lists what may change), and it goes on with the samples, rotations and learning rates of the
uninterrupted run (:class:`ResumeDraws`, :class:`LastCheckpoint`, :mod:`rhosr.data`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from rhosr.checks import check_number
from rhosr.config import from_dict_strict
from rhosr.errors import InputError, RhosrWarning
from rhosr.model import ModelConfig, build_model, model_config

CONFIG_FOLDER = Path(__file__).parent / "configs"
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "16-true", "16", "bf16-mixed", "bf16-true",
              "bf16", "transformer-engine", "transformer-engine-float16")
"""Lightning's precision names."""


@dataclass
class TrainConfig:
    """Everything a training run needs besides the store. Unknown keys are errors."""

    model: dict = field(default_factory=lambda: ModelConfig().to_dict())  # see rhosr.model
    lr: float = 0.01
    epochs: int = 50
    warmup_epochs: int = 1
    warmup_factor: float = 1e-5
    warmup_shape: str = "constant"
    gradient_clip_val: float | None = None
    ema_decay: float | None = None
    loss_delta: float | None = None  # None: L1 (Err_rho); a number: Huber, see objective_loss
    betas: tuple[float, float] = (0.9, 0.99)
    batch_size: int = 1
    accumulate_grad_batches: int = 1
    crop: int | None = None
    crop_halo: int | None = None
    augment: bool = True
    input: str = "sad"
    seed: int = 0
    num_workers: int = 0
    cache_gb: float = 2.0
    precision: str = "32-true"
    compile: bool = False
    limit_train_batches: int | None = None
    limit_val_batches: int | None = None
    checkpoint_every_n_steps: int = 100
    val_every_n_epochs: int = 1
    log_every_n_steps: int = 10

    def __post_init__(self):
        self.check()

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        cfg = from_dict_strict(cls, d, "training config")
        _ = cfg.model_config  # validate now, not after the data is loaded
        if cfg.val_every_n_epochs < 1 or cfg.epochs % cfg.val_every_n_epochs:
            raise InputError(f"training config: epochs ({cfg.epochs}) must be a multiple of "
                             f"val_every_n_epochs ({cfg.val_every_n_epochs}) so the last epoch is validated")
        cfg.betas = tuple(cfg.betas)
        return cfg

    def check(self) -> None:
        """Every key a finite number (or flag, or name) in its sane range, in place; an
        InputError naming the key otherwise (numbers written as strings are converted)."""

        def number(key, **bounds):
            value = getattr(self, key)
            if value is not None or not bounds.pop("optional", False):
                bounds.pop("optional", None)
                setattr(self, key, check_number(f"training config: {key}", value, **bounds))

        number("lr", above=0, high=1.0)
        for key in ("epochs", "batch_size", "accumulate_grad_batches", "checkpoint_every_n_steps",
                    "val_every_n_epochs", "log_every_n_steps"):
            number(key, integer=True, low=1)
        number("warmup_epochs", integer=True, low=0, high=self.epochs)
        number("warmup_factor", above=0, high=1.0)
        number("gradient_clip_val", above=0, optional=True)
        number("ema_decay", above=0, high=0.999999, optional=True)
        number("loss_delta", above=0, high=1.0, optional=True)
        if self.warmup_shape not in WARMUP_SHAPES:
            raise InputError(f"training config: warmup_shape must be one of {', '.join(WARMUP_SHAPES)}, "
                             f"got {self.warmup_shape!r}")
        number("num_workers", integer=True, low=0)
        number("cache_gb", low=0, high=1e4)
        number("seed", integer=True, low=0, high=2**32 - 1)
        number("crop", integer=True, low=1, optional=True)
        number("crop_halo", integer=True, low=0, optional=True)
        for key in ("limit_train_batches", "limit_val_batches"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, float) and 0 < value <= 1):
                number(key, integer=True, low=1, hint="a batch count, or a fraction in (0, 1]")
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise InputError(f"training config: betas must be two numbers, got {self.betas!r}")
        self.betas = tuple(check_number("training config: betas", b, low=0, high=0.999999)
                           for b in self.betas)
        for key in ("augment", "compile"):
            if not isinstance(getattr(self, key), bool):
                raise InputError(f"training config: {key} must be true or false, got {getattr(self, key)!r}")
        self.precision = str(self.precision)
        if self.precision not in PRECISIONS:
            raise InputError(f"training config: precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")

    @classmethod
    def load(cls, name_or_path: str) -> TrainConfig:
        """A YAML file, or the name of a config shipped in ``rhosr/configs``."""
        import yaml

        path = Path(name_or_path)
        if not path.exists():
            path = CONFIG_FOLDER / f"{name_or_path}.yaml"
        if not path.exists():
            shipped = ", ".join(sorted(p.stem for p in CONFIG_FOLDER.glob("*.yaml")))
            raise InputError(f"{name_or_path}: no such config file or shipped config ({shipped})")
        if not path.is_file():
            raise InputError(f"{path}: not a config file (a folder or something else)")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(f"{path}: not valid YAML ({problem}{at})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: a training config is a YAML mapping (key: value lines), "
                             f"not a {type(data).__name__}")
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @property
    def model_config(self) -> ModelConfig:
        """The model's typed config; ``input`` names the input of the old flat ``model`` form."""
        if not isinstance(self.model, dict):
            raise InputError(f"training config: model must be a mapping, got {type(self.model).__name__}")
        if set(self.model) & {"inputs", "trunk", "base"} and self.input != "sad":
            raise InputError("training config: input is for the old flat model form; "
                             "list the inputs under model: inputs: [...]")
        return model_config(self.model, self.input)

    @property
    def halo(self) -> int:
        """Coarse voxels dropped at each face of a crop before the loss (crop training)."""
        return self.crop_halo if self.crop_halo is not None else self.model_config.halo


WARMUP_SHAPES = ("constant", "linear")


RESUME_SAFE_KEYS = {
    "num_workers": "data-loader processes: every random draw is a function of (seed, epoch, "
                   "sample), not of the process that makes it (rhosr.data)",
    "checkpoint_every_n_steps": "how often last.ckpt is written",
    "log_every_n_steps": "how often metrics are logged",
    "cache_gb": "memory kept for inputs computed from the atoms; a value not kept is computed again, "
                "the same",
    "val_every_n_epochs": "how often the model is validated; validation draws nothing and does "
                          "not change the weights (it must still divide epochs)",
}
"""The training-config keys that ``--resume`` may change, and why each is safe: they decide how
often things are written, checked or loaded, never what is trained. Every other key changes the
run itself and is refused: the model, optimizer and schedule (``lr``, ``betas``, ``epochs``,
``warmup_*``: the checkpoint's optimizer and learning-rate schedule would go on with the old
values while the new ones were recorded), what one step trains on (``batch_size``,
``accumulate_grad_batches``, ``crop``, ``crop_halo``, ``augment``, ``input``,
``limit_train_batches``), the random draws (``seed``), what "best" is measured on
(``limit_val_batches``), the arithmetic (``precision``) and ``compile`` (a compiled model's weights
carry other names in the checkpoint)."""


def resume_config_changes(old: dict, new: dict) -> list[str]:
    """``key old -> new`` for every key of the training config ``new`` that differs from the
    run's ``old`` one, other than :data:`RESUME_SAFE_KEYS`; keys inside the model description
    are dotted (``model.trunk.num_feat``), after filling in the model's defaults."""
    defaults = TrainConfig().to_dict()
    old, new = {**defaults, **old}, {**defaults, **new}
    flat_old, flat_new = ({**_flatten({k: v for k, v in d.items() if k != "model"}),
                           **_flatten(ModelConfig.from_dict(d["model"]).to_dict(), "model.")}
                          for d in (old, new))
    return [f"{key} {flat_old.get(key)!r} -> {flat_new.get(key)!r}"
            for key in sorted(set(flat_old) | set(flat_new))
            if key not in RESUME_SAFE_KEYS and flat_old.get(key) != flat_new.get(key)]


def _flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts as one level of dotted keys; tuples as lists (YAML reads lists)."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def check_resume_config(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume the run in ``run_dir`` with a config that changes the run (before anything
    is written). The run's config is its ``config.yaml``, else the one in its last checkpoint."""
    import yaml

    path = run_dir / "config.yaml"
    if path.exists():
        old = yaml.safe_load(path.read_text()) or {}
    else:
        ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        old = ckpt.get("hyper_parameters", {}).get("config", {})
    changes = resume_config_changes(old, config.to_dict())
    if changes:
        raise InputError(
            f"{run_dir}: --resume with a config that differs from the run's: {', '.join(changes)}. "
            f"A resumed run keeps its config (only {', '.join(RESUME_SAFE_KEYS)} may change); "
            f"to train with new values start a new run from this one (--init {run_dir / 'best'})")


def density_loss(pred: torch.Tensor, label: torch.Tensor, voxel_volume: torch.Tensor,
                 n_electrons: torch.Tensor, core: int = 0) -> torch.Tensor:
    """Mean over the batch of ``integral |pred - label| / N_e`` (a fraction; x100 = Err_rho %).

    ``core`` > 0 drops that many fine voxels at every face (crop training)."""
    diff = (pred - label).abs()
    if core > 0:
        diff = diff[..., core:-core, core:-core, core:-core]
    per_sample = diff.sum(dim=(1, 2, 3, 4)).double() * voxel_volume / n_electrons
    return per_sample.mean()


def objective_loss(pred: torch.Tensor, label: torch.Tensor, voxel_volume: torch.Tensor,
                   n_electrons: torch.Tensor, delta: float | None, core: int = 0) -> torch.Tensor:
    """What training minimises. ``delta`` None: :func:`density_loss` (L1, the paper's). A
    ``delta`` in e/Bohr^3: the Huber loss per voxel divided by ``delta``, integrated and over N_e:
    equal to the L1 where ``|pred - label| > delta`` (less ``delta/2``), quadratic below. Most of
    a box is vacuum, where the residual against a good base is tiny; under L1 every such voxel
    pulls the trunk with a full-size gradient of its sign, under Huber with a gradient
    proportional to the residual."""
    if delta is None:
        return density_loss(pred, label, voxel_volume, n_electrons, core)
    huber = torch.nn.functional.huber_loss(pred, label, delta=delta, reduction="none") / delta
    if core > 0:
        huber = huber[..., core:-core, core:-core, core:-core]
    return (huber.sum(dim=(1, 2, 3, 4)).double() * voxel_volume / n_electrons).mean()


def lr_factor(step: int, warmup_steps: int, total_steps: int, warmup_factor: float,
              warmup_shape: str = "constant") -> float:
    """During the warm-up ``warmup_factor`` (``constant``, the paper's) or rising linearly from
    it to 1 (``linear``); then cosine from 1 to 0 over the remaining steps."""
    if step < warmup_steps:
        if warmup_shape == "linear":
            return warmup_factor + (1.0 - warmup_factor) * step / warmup_steps
        return warmup_factor
    remaining = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / remaining)))


class DensityModule(L.LightningModule):
    """The Lightning wrapper: loss, optimizer, schedule. The network is ``self.model``."""

    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg = TrainConfig.from_dict(config)
        self.model = build_model(self.cfg.model_config)
        self.upscale = self.model.upscale

    def forward(self, inputs, n_electrons=None, voxel_volume=None, fine=None):
        return self.model(inputs, n_electrons, voxel_volume, fine)

    def training_step(self, batch, batch_idx):
        core = 0
        if self.cfg.crop:
            pred = self.model(batch["inputs"], fine=batch.get("fine"))
            core = self.cfg.halo * self.upscale
        else:
            pred = self.model(batch["inputs"], batch["n_electrons"], batch["voxel_volume"], batch.get("fine"))
        args = (pred, batch["label"], batch["voxel_volume"], batch["n_electrons"])
        loss = objective_loss(*args, self.cfg.loss_delta, core=core)
        err = loss if self.cfg.loss_delta is None else density_loss(*args, core=core).detach()
        self.log("train_err", 100 * err, prog_bar=True, batch_size=batch["inputs"].shape[0])
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=1)
        return loss.float()

    def validation_step(self, batch, batch_idx):
        pred = self.model(batch["inputs"], batch["n_electrons"], batch["voxel_volume"], batch.get("fine"))
        err = 100 * density_loss(pred, batch["label"], batch["voxel_volume"], batch["n_electrons"])
        self.log("val_err", err, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=1)

    def scheduled_steps(self) -> int:
        """Optimizer steps in ``epochs`` epochs: the length of the cosine schedule. Not Lightning's
        ``estimated_stepping_batches``, which is ``--max-steps`` when that is smaller: a run
        stopped early and resumed would change its learning rates at the resume."""
        self.trainer.estimated_stepping_batches  # noqa: B018 (sets up the train loader, counts its batches)
        per_epoch = math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
        return max(1, per_epoch * self.cfg.epochs)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.cfg.lr, betas=self.cfg.betas)
        total = self.scheduled_steps()
        warmup = max(1, total // max(1, self.cfg.epochs)) * self.cfg.warmup_epochs
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, warmup, total, self.cfg.warmup_factor, self.cfg.warmup_shape))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def make_loaders(store_path: str, cfg: TrainConfig, val_ids: list[str] | None = None,
                 train_ids: list[str] | None = None):
    """Loaders over the store's train and validation entries (or ``train_ids``, ``val_ids``)."""
    from rhosr.data import DensityDataset, EpochSampler

    model = cfg.model_config
    cache = cfg.cache_gb * 1e9
    train = DensityDataset(store_path, "train", augment=cfg.augment, crop=cfg.crop, seed=cfg.seed,
                           ids=train_ids, model=model, cache_bytes=cache)
    val = DensityDataset(store_path, "validation", ids=val_ids, model=model, cache_bytes=cache)
    if len(train) == 0 or len(val) == 0:
        raise InputError(f"{store_path}: training needs train and validation entries "
                         f"(has {len(train)} and {len(val)})")
    if cfg.crop and cfg.crop - 2 * cfg.halo <= 0:
        raise InputError(f"crop {cfg.crop} leaves no core inside a halo of {cfg.halo} coarse voxels; "
                         "use a larger crop or set crop_halo")
    kwargs = {"num_workers": cfg.num_workers, "persistent_workers": cfg.num_workers > 0}
    batch = cfg.batch_size if cfg.crop else 1  # whole boxes differ in size
    return (torch.utils.data.DataLoader(train, batch_size=batch, sampler=EpochSampler(train, True, cfg.seed),
                                        **kwargs),
            torch.utils.data.DataLoader(val, batch_size=1, sampler=EpochSampler(val, False), **kwargs))


class ResumeDraws(L.Callback):
    """On ``--resume``, start the training sampler where the checkpoint left off: in its epoch,
    past the batches of that epoch already trained on (Lightning would replay the epoch from its
    first batch, with other samples and rotations than the uninterrupted run). A resume on another
    number of processes (``--devices`` x ``--num-nodes``) is refused: each process takes its share
    of every epoch, so the steps per epoch, the learning-rate schedule and the draws would change."""

    def __init__(self, loader, limit_batches: int | None = None):
        self.loader = loader
        self.limit_batches = limit_batches

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["rhosr_world_size"] = trainer.world_size

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        saved = checkpoint.get("rhosr_world_size", trainer.world_size)  # unknown before it was saved
        if saved != trainer.world_size:
            raise InputError(f"this run trained on {saved} process(es) (--devices x --num-nodes); "
                             f"resume it on {saved}, not {trainer.world_size}")
        loop = checkpoint["loops"]["fit_loop"]
        epoch = loop["epoch_progress"]["current"]["processed"]
        done = loop["epoch_loop.batch_progress"]["current"]["ready"]  # batches trained this epoch
        per_epoch = len(self.loader) if self.limit_batches is None else min(len(self.loader),
                                                                            self.limit_batches)
        if 0 < done < per_epoch:  # at an epoch's end Lightning goes on with the next epoch itself
            self.loader.sampler.resume(epoch, done * self.loader.batch_size)


class LastCheckpoint(L.Callback):
    """Write ``last.ckpt`` (for ``--resume``) every ``every_n_steps`` optimizer steps and at the
    step that reaches ``--max-steps``, as that batch ends: a state inside the epoch that a resume
    continues exactly (:class:`ResumeDraws`), the state a SIGKILLed run resumes from. (Saved
    after ``fit`` returns instead, Lightning's state counts the cut epoch as finished and a resume
    skips the rest of it. Lightning's ``ModelCheckpoint``, beside a second writer of
    ``last.ckpt``, writes ``last-v1.ckpt``.)"""

    def __init__(self, path: Path, every_n_steps: int):
        self.path = path
        self.every_n_steps = every_n_steps
        self.saved_step = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # counts optimizer steps: the same over accumulated batches
        due = step % self.every_n_steps == 0 or 0 < trainer.max_steps <= step
        if due and step != self.saved_step:
            save_checkpoint(trainer, self.path)
            self.saved_step = step


def save_checkpoint(trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a name beside ``path``, then renamed to it, so ``path`` is
    always a whole checkpoint. (Lightning writes in the system's temporary folder and moves the
    file, which is a copy when that folder is on another file system: a run killed during the
    copy would leave a broken ``last.ckpt``.)"""
    part = path.with_name(f".{path.name}.part")
    trainer.save_checkpoint(str(part))  # every rank calls it; the global-zero rank writes
    if trainer.is_global_zero:
        os.replace(part, path)


def ema_callback(decay: float) -> L.Callback:
    """Lightning's weight averaging with an exponential moving average of ``decay`` per step,
    listed first among the callbacks so that a step's average is taken before
    :class:`LastCheckpoint` saves it; the raw weights come back at ``on_validation_end`` rather
    than at the validation epoch's end, so that :class:`~rhosr.best_model.BestModelExporter`
    (whose hook runs at the epoch's end) exports the averaged weights."""
    from lightning.pytorch.callbacks import WeightAveraging
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    class EMAWeightAveraging(WeightAveraging):
        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            pass

        def on_validation_end(self, trainer, pl_module) -> None:
            if self._average_model is not None:
                self._swap_models(pl_module)

    return EMAWeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(decay))


def run_ids_file(split: str) -> str:
    """The file in a run folder that fixes the run's ``split`` entries (``train_ids.json``...)."""
    return f"{split}_ids.json"


def frozen_split_ids(run_dir: Path, store, split: str) -> list[str]:
    """The ``split`` entries of this run, fixed when it first starts.

    A store may grow while a run trains (labelling goes on beside it). A resumed run is the
    same run: it keeps the training and validation ids it started with in
    ``run_dir/train_ids.json`` and ``run_dir/validation_ids.json``. A validation set that
    changed would make "lowest validation error" compare numbers measured on different
    molecules; a training set that grew changed the number of steps per epoch, so the cosine
    schedule (computed from the total step count) jumped back up at the resume (seen: lr 1.8e-5
    -> 3.2e-5). New entries are for a new run (``--init`` from this one). Runs from before
    these files existed fix theirs at their next resume (the validation change also restarts
    their best-model record, see :class:`rhosr.best_model.BestModelExporter`).

    Under DDP every rank calls this: with Lightning's own launcher rank 0 writes the file before
    the other ranks start and they read it; ranks started together (torchrun, srun) each list the
    same store and write the same ids (atomically), unless an entry lands in between.
    """
    import json

    from rhosr.io import atomic_write

    path = run_dir / run_ids_file(split)
    if path.exists():
        ids = json.loads(path.read_text())
        missing = [i for i in ids if not store.has(i)]
        if missing:
            raise InputError(f"{path}: {len(missing)} {split} entries are not in the store "
                             f"(first: {missing[0]}); train on the store this run started with")
        return ids
    ids = store.entry_ids(split)
    with atomic_write(path) as fh:
        json.dump(ids, fh)
    return ids


def train(store_path: str, config: TrainConfig, run_dir: str | os.PathLike, init: str | None = None,
          resume: bool = False, devices: int | str = 1, accelerator: str = "auto",
          strategy: str = "auto", num_nodes: int = 1, max_steps: int = -1,
          progress: bool = True) -> dict:
    """Train (or resume, or fine-tune from ``init``) and export the best model to ``run_dir/best``.

    One run writes a run folder at a time: the first process of a run holds a claim
    (``rhosr.claims``: ``.NAME.train.json`` beside the folder, cleared when its process is
    dead), and a second ``rhosr train`` on the same ``--out`` is a one-line error. The other
    processes of a DDP run (``LOCAL_RANK``/``NODE_RANK`` > 0) belong to the claiming run."""
    from contextlib import nullcontext

    from rhosr.claims import ClaimedElsewhere, claim
    from rhosr.io import prepare_output_folder

    run_dir = Path(run_dir)
    prepare_output_folder(run_dir.absolute().parent, "--out")  # the claim is written beside the run
    first = int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0
    try:
        held = claim(run_dir.absolute().parent, f".{run_dir.name}.train") if first else nullcontext()
    except ClaimedElsewhere as exc:
        raise InputError(f"{run_dir}: another rhosr train is writing this run folder ({exc})") from None
    except OSError as exc:
        raise InputError(f"{run_dir}: cannot write a run folder there ({exc.strerror})") from None
    with held:
        return _train_claimed(store_path, config, run_dir, init, resume, devices, accelerator, strategy,
                              num_nodes, max_steps, progress)


def _train_claimed(store_path: str, config: TrainConfig, run_dir: Path, init: str | None, resume: bool,
                   devices: int | str, accelerator: str, strategy: str, num_nodes: int, max_steps: int,
                   progress: bool) -> dict:
    """:func:`train` while this process holds the run folder's claim."""
    import yaml
    from lightning.pytorch.callbacks import Timer
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from rhosr.best_model import BestModelExporter
    from rhosr.checkpoint import load_weights_into
    from rhosr.io import atomic_write, prepare_output_folder
    from rhosr.run_metrics import keep_metrics_history
    from rhosr.store import DatasetStore

    run_dir = Path(run_dir)
    if init and not resume:  # a damaged or unfit --init is an error before anything is written
        load_weights_into(build_model(config.model_config), init)
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and not last.exists():
        raise InputError(f"{run_dir}: nothing to resume (no checkpoints/last.ckpt)")
    if not resume and last.exists():
        raise InputError(f"{run_dir}: already holds a run; pass --resume or choose another --out")
    if resume:
        check_resume_config(run_dir, config)
    prepare_output_folder(run_dir, "--out")
    if resume:
        keep_metrics_history(run_dir / "logs")
    with atomic_write(run_dir / "config.yaml") as fh:
        yaml.safe_dump(config.to_dict(), fh, sort_keys=False)
    L.seed_everything(config.seed, workers=True, verbose=False)
    store = DatasetStore.open(store_path)
    for entry_id, reason in store.scan()[1].items():  # damaged metadata: no split, so no listing names it
        warnings.warn(f"skipping damaged entry {entry_id}: {reason}", RhosrWarning, stacklevel=2)
    train_ids = frozen_split_ids(run_dir, store, "train")
    val_ids = frozen_split_ids(run_dir, store, "validation")
    train_loader, val_loader = make_loaders(store_path, config, val_ids, train_ids)
    module = DensityModule(config.to_dict())
    if init and not resume:
        load_weights_into(module.model, init)
    if config.compile:
        module.model = torch.compile(module.model)
    store_meta = store.meta
    trainer = L.Trainer(
        default_root_dir=str(run_dir), max_epochs=config.epochs, max_steps=max_steps,
        accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
        precision=config.precision, accumulate_grad_batches=config.accumulate_grad_batches,
        gradient_clip_val=config.gradient_clip_val,
        limit_train_batches=config.limit_train_batches, limit_val_batches=config.limit_val_batches,
        log_every_n_steps=config.log_every_n_steps, enable_progress_bar=progress,
        check_val_every_n_epoch=config.val_every_n_epochs,
        enable_model_summary=False, num_sanity_val_steps=0,
        logger=[CSVLogger(str(run_dir), name="", version="logs",
                          flush_logs_every_n_steps=config.log_every_n_steps),  # a killed run keeps its rows
                TensorBoardLogger(str(run_dir), name="", version="tensorboard")],
        callbacks=[
            *([ema_callback(config.ema_decay)] if config.ema_decay else []),
            LastCheckpoint(last, config.checkpoint_every_n_steps),
            exporter := BestModelExporter(run_dir / "best", config, store_meta, str(store_path),
                                          val_ids),
            Timer(),
            ResumeDraws(train_loader, config.limit_train_batches),
        ],
        use_distributed_sampler=False,  # EpochSampler splits the data between ranks itself
        enable_checkpointing=False,  # no default ModelCheckpoint: LastCheckpoint writes last.ckpt
    )
    # weights_only: the resume checkpoint holds tensors, numbers and strings only, so it is read
    # without unpickling code (and Lightning does not warn about it).
    with warnings.catch_warnings():  # ResumeDraws resumes inside the epoch, which Lightning cannot
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before")
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume else None,
                    weights_only=True)
    if not 0 < max_steps <= trainer.global_step:  # else LastCheckpoint wrote it
        save_checkpoint(trainer, last)  # the final state, after the last epoch
    if trainer.is_global_zero:
        from rhosr.render import plot_learning_curve

        plot_learning_curve(run_dir / "logs", run_dir / "learning_curve.png")
    return {"global_step": trainer.global_step, "epoch": trainer.current_epoch,
            "best_val_err": None if exporter.best == float("inf") else exporter.best}
