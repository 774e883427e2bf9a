"""Torch datasets over a store, and the 24 grid rotations that keep input and label aligned.

Arrays are ``(C, X, Y, Z)`` per sample (``C = 1``); densities in e/Bohr^3.

Rotations. A proper rotation by multiples of 90 degrees permutes the axes and negates some of
them. On a periodic grid whose point ``i`` sits at ``i*h`` from the box corner, negating an
axis maps index ``i`` to ``(-i) mod n`` - not ``n - 1 - i`` as ``torch.flip``/``rot90`` do.
With ``flip`` the coarse point ``i`` (fine point ``2i``) lands on fine point ``2n_c - 1 - 2i``
but its coarse image on ``n_c - 1 - i``, i.e. fine ``2n_c - 2 - 2i``: the fine grid slides one
voxel against the coarse one. ``rotate_grid`` negates by ``(-i) mod n``, so the rotated coarse
input is exactly the SAD of the rotated molecule on its own coarse grid.

Random draws. Every random choice for a sample (its rotation, its crop) comes from a generator
seeded by ``(seed, epoch, index)``, and the order of each epoch from ``seed + epoch``
(:class:`EpochSampler`). So the draws are a function of the run's seed and of where training
stands, not of a generator's history: they do not depend on the number of data-loader workers,
and a resumed run draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from rhosr.grid import Grid

TRAINING_SPLITS = ("train", "validation")


def proper_rotations() -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """The 24 proper rotations of the cube as ``(perm, signs)``: new axis ``d`` is old axis
    ``perm[d]`` times ``signs[d]``."""
    out = []
    for perm in itertools.permutations(range(3)):
        parity = np.linalg.det(np.eye(3)[list(perm)])
        for signs in itertools.product((1, -1), repeat=3):
            if parity * np.prod(signs) > 0:
                out.append((perm, signs))
    return out


ROTATIONS = proper_rotations()


def rotate_grid(array, perm, signs):
    """Rotate the last three (spatial) axes of a torch tensor or numpy array."""
    is_torch = isinstance(array, torch.Tensor)
    lead = array.ndim - 3
    axes = list(range(lead)) + [lead + p for p in perm]
    out = array.permute(*axes) if is_torch else np.transpose(array, axes)
    for d, s in enumerate(signs):
        if s < 0:
            axis = lead + d
            n = out.shape[axis]
            index = (-np.arange(n)) % n
            if is_torch:
                out = out.index_select(axis, torch.as_tensor(index))
            else:
                out = np.take(out, index, axis=axis)
    return out


def rotate_positions(positions_bohr: np.ndarray, lengths_bohr, perm, signs) -> tuple[np.ndarray, tuple]:
    """The same rotation applied to atoms (Bohr, box frame) and the box lengths."""
    lengths = np.asarray(lengths_bohr)
    new = positions_bohr[:, list(perm)] * np.asarray(signs)
    new_lengths = lengths[list(perm)]
    return np.mod(new, new_lengths), tuple(float(v) for v in new_lengths)


class DensityDataset(torch.utils.data.Dataset):
    """(SAD, label) pairs of a store's training or validation entries.

    Each item is a dict: ``sad`` (1, X, Y, Z) and ``label`` (1, uX, uY, uZ) float32 tensors,
    ``n_electrons`` and ``voxel_volume`` (fine voxel, Bohr^3) float64 scalars, ``id``.
    ``augment`` applies one of the 24 rotations at random; ``crop`` (coarse points per axis)
    reads a random periodic crop instead of the whole box. The item's key is ``index`` or
    ``(index, epoch)`` (what :class:`EpochSampler` yields; a plain index is epoch 0), and its
    draws come from :meth:`draws`. Test entries are refused: training code can never see them.
    """

    def __init__(self, store_path: str, split: str, augment: bool = False, crop: int | None = None,
                 seed: int = 0, input_name: str = "sad", ids: list[str] | None = None):
        from rhosr.store import DatasetStore

        if split not in TRAINING_SPLITS:
            raise ValueError(f"training data comes from {TRAINING_SPLITS}, never {split!r}")
        self.store_path = store_path
        self.store = DatasetStore.open(store_path)
        self.split = split
        self.ids = ids if ids is not None else self.store.entry_ids(split)
        self.augment = augment
        self.crop = crop
        self.input_name = input_name
        self.seed = seed

    def __len__(self) -> int:
        return len(self.ids)

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
        if self.crop:
            start = tuple(int(rng.integers(n)) for n in grid.coarse_mesh)
            size = tuple(min(self.crop, n) for n in grid.coarse_mesh)
            sad, label = self.store.read_crop(entry_id, start, size, self.input_name)
        else:
            entry = self.store.read_entry(entry_id, (self.input_name, "label"))
            sad, label = getattr(entry, self.input_name), entry.label
        sad = torch.as_tensor(np.asarray(sad, dtype=np.float32))[None]
        label = torch.as_tensor(np.asarray(label, dtype=np.float32))[None]
        if self.augment:
            perm, signs = ROTATIONS[int(rng.integers(len(ROTATIONS)))]
            sad, label = rotate_grid(sad, perm, signs), rotate_grid(label, perm, signs)
        return {"sad": sad.contiguous(), "label": label.contiguous(), "id": entry_id,
                "n_electrons": torch.tensor(float(meta["n_electrons"]), dtype=torch.float64),
                "voxel_volume": torch.tensor(grid.voxel_volume("fine"), dtype=torch.float64)}


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
