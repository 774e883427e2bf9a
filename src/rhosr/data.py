"""Torch datasets over a store: the model's inputs, the base's fine array and the label.

Arrays are ``(C, X, Y, Z)`` per sample; densities in e/Bohr^3. The inputs are built by the
model's own input builders (:mod:`rhosr.inputs`): stored arrays where the store has them, the
rest computed from the entry's atoms when read. The 24 grid rotations used for augmentation
live in :mod:`rhosr.grid` (re-exported here).

Random draws. Every random choice for a sample (its rotation, its crop) comes from a generator
seeded by ``(seed, epoch, index)``, and the order of each epoch from ``seed + epoch``
(:class:`EpochSampler`). So the draws are a function of the run's seed and of where training
stands, not of a generator's history: they do not depend on the number of data-loader workers,
and a resumed run draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import numpy as np
import torch

from rhosr.grid import ROTATIONS, Grid, proper_rotations, rotate_grid, rotate_positions  # noqa: F401

TRAINING_SPLITS = ("train", "validation")
COMPUTED_CACHE_BYTES = 2_000_000_000
"""Memory a dataset may keep for inputs computed from the atoms (per process)."""


def periodic_crop(array: np.ndarray, start, size, scale: int = 1) -> np.ndarray:
    """``scale * size`` points from ``scale * start`` (wrapping) along the last three axes."""
    index = [(scale * s + np.arange(scale * n)) % m for s, n, m in zip(start, size, array.shape[-3:])]
    return array[(..., *np.ix_(*index))]


class DensityDataset(torch.utils.data.Dataset):
    """(inputs, label) pairs of a store's training or validation entries.

    Each item is a dict: ``inputs`` (C, X, Y, Z) and ``label`` (1, uX, uY, uZ) float32
    tensors, ``fine`` (1, uX, uY, uZ) when the model's base reads a fine-mesh array,
    ``n_electrons`` and ``voxel_volume`` (fine voxel, Bohr^3) float64 scalars, ``id``.
    ``model`` is the :class:`rhosr.model.ModelConfig` whose inputs are built (default: the
    ``input_name`` SAD alone). ``augment`` applies one of the 24 rotations at random; ``crop``
    (coarse points per axis) takes a random periodic crop instead of the whole box. The item's
    key is ``index`` or ``(index, epoch)`` (what :class:`EpochSampler` yields; a plain index is
    epoch 0), and its draws come from :meth:`draws`. Test entries are refused: training code
    can never see them.

    Damaged entries (``rhosr.integrity``, quick check: metadata, shapes, chunk files) are left
    out when the dataset is made, with a warning naming each and why (``self.damaged``); damage
    found later, by a read, stops the run with :class:`~rhosr.integrity.DamagedEntryError`
    naming the entry, rather than training on zeros.
    """

    def __init__(self, store_path: str, split: str, augment: bool = False, crop: int | None = None,
                 seed: int = 0, input_name: str = "sad", ids: list[str] | None = None, model=None,
                 cache_bytes: float = COMPUTED_CACHE_BYTES):
        from rhosr.model import model_config
        from rhosr.store import DatasetStore

        if split not in TRAINING_SPLITS:
            raise ValueError(f"training data comes from {TRAINING_SPLITS}, never {split!r}")
        self.store_path = store_path
        self.store = DatasetStore.open(store_path)
        self.split = split
        unreadable = {}  # entries whose metadata is damaged: their split is unknown, so name them
        if ids is None:
            ids, unreadable = self.store.scan(split)
        self.ids, self.damaged = self.store.whole(ids)
        self.damaged.update(unreadable)
        if self.damaged:
            import warnings

            from rhosr.errors import RhosrWarning

            for entry_id, reason in self.damaged.items():
                warnings.warn(f"{split} data: skipping damaged entry {entry_id}: {reason}", RhosrWarning,
                              stacklevel=2)
        self.augment = augment
        self.crop = crop
        self.model = model_config({} if model is None else model, input_name)
        self.builders = self.model.builders
        self.seed = seed
        self._computed: dict[str, tuple] = {}  # entry id -> (inputs, fine) computed from atoms
        self._computed_bytes = 0
        self.cache_bytes = cache_bytes

    def _remember(self, entry_id: str, inputs: np.ndarray, fine, all_stored: bool) -> None:
        """Keep inputs computed from the atoms (not read from the store) for the next epoch,
        up to ``cache_bytes`` per dataset (default :data:`COMPUTED_CACHE_BYTES`; the fine-mesh
        SAD of a QM9 molecule takes ~0.2 s to compute and ~5 MB to keep, the fitted prior
        ~0.5 s)."""
        if all_stored:
            return
        size = inputs.nbytes + (0 if fine is None else fine.nbytes)
        if self._computed_bytes + size <= self.cache_bytes:
            self._computed[entry_id] = (inputs, fine)
            self._computed_bytes += size

    def __len__(self) -> int:
        return len(self.ids)

    def _read(self, entry_id: str, meta: dict, grid: Grid, rng: np.random.Generator):
        """(inputs, fine or None, label) as float32 numpy arrays, whole box or one crop."""
        from rhosr.inputs import entry_inputs, entry_molecule

        stored = tuple(b.store_array for b in self.builders if b.store_array)
        all_stored = (len(stored) == len(self.builders) and not self.model.needs_fine
                      and set(stored) <= set(self.store.array_names(entry_id)))
        start = size = None
        if self.crop:
            start = tuple(int(rng.integers(n)) for n in grid.coarse_mesh)
            size = tuple(min(self.crop, n) for n in grid.coarse_mesh)
            if all_stored:  # the store reads only the chunks the crop touches
                crops = self.store.read_crops(entry_id, start, size, (*stored, "label"))
                inputs = np.stack([np.asarray(crops[name], np.float32) for name in stored])
                return inputs, None, np.asarray(crops["label"], np.float32)
        entry = self.store.read_entry(entry_id, (*stored, "label"))
        label = np.asarray(entry.label, np.float32)
        if entry_id in self._computed:
            inputs, fine = (None if a is None else a.copy() for a in self._computed[entry_id])
        else:
            inputs = entry_inputs(self.builders, entry, grid)
            fine = self.model.build_fine(entry_molecule(meta), grid) if self.model.needs_fine else None
            self._remember(entry_id, inputs, fine, all_stored)
        if self.crop:
            up = grid.upscale
            inputs, label = periodic_crop(inputs, start, size), periodic_crop(label, start, size, up)
            fine = None if fine is None else periodic_crop(fine, start, size, up)
        return inputs, fine, label

    def draws(self, index: int, epoch: int) -> np.random.Generator:
        """The generator of sample ``index``'s random choices in ``epoch``: seeded by
        ``(seed, epoch, index)``, so the same in every worker, process and resumed run."""
        return np.random.default_rng((self.seed, epoch, index))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = self.draws(index, epoch)
        entry_id = self.ids[index]
        meta = self.store.entry_meta(entry_id)
        grid = Grid.from_dict(meta["grid"])
        inputs, fine, label = self._read(entry_id, meta, grid, rng)
        inputs = torch.as_tensor(np.ascontiguousarray(inputs, dtype=np.float32))
        label = torch.as_tensor(np.ascontiguousarray(label, dtype=np.float32))[None]
        fine = None if fine is None else torch.as_tensor(np.ascontiguousarray(fine, dtype=np.float32))[None]
        if self.augment:
            perm, signs = ROTATIONS[int(rng.integers(len(ROTATIONS)))]
            inputs, label = rotate_grid(inputs, perm, signs), rotate_grid(label, perm, signs)
            fine = None if fine is None else rotate_grid(fine, perm, signs)
        item = {"inputs": inputs.contiguous(), "label": label.contiguous(), "id": entry_id,
                "n_electrons": torch.tensor(float(meta["n_electrons"]), dtype=torch.float64),
                "voxel_volume": torch.tensor(grid.voxel_volume("fine"), dtype=torch.float64)}
        if fine is not None:
            item["fine"] = fine.contiguous()
        return item


class EpochSampler(torch.utils.data.Sampler):
    """Keys ``(index, epoch)`` of a :class:`DensityDataset`, in an order fixed by ``seed + epoch``.

    ``shuffle``: a permutation drawn from ``torch.Generator().manual_seed(seed + epoch)`` (the
    order ``torch.utils.data.DistributedSampler`` gives), else the dataset order. Under
    ``torch.distributed`` each rank takes every ``world_size``-th key, the list padded with its
    head to a multiple of the ranks (as ``DistributedSampler`` does), so Lightning must not add
    its own sampler (``Trainer(use_distributed_sampler=False)``). Lightning calls
    :meth:`set_epoch` at each epoch's start; :meth:`resume` starts a resumed run inside the
    epoch where its checkpoint was taken.
    """

    def __init__(self, dataset: DensityDataset, shuffle: bool = True, seed: int = 0):
        self.n = len(dataset)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume(self, epoch: int, done: int) -> None:
        """Make the next iteration ``epoch``'s, without its first ``done`` keys of this rank
        (the samples the checkpointed run had already trained on)."""
        self.epoch, self.skip = int(epoch), int(done)

    @staticmethod
    def _rank_and_size() -> tuple[int, int]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        return -(-self.n // self._rank_and_size()[1])

    def __iter__(self):
        rank, size = self._rank_and_size()
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        total = -(-self.n // size) * size
        order = (order * (total // max(1, len(order)) + 1))[:total]  # padded with its head
        mine = order[rank:total:size][self.skip:]
        self.skip = 0
        return iter([(index, self.epoch) for index in mine])
