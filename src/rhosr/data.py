"""Torch datasets over a store, and the 24 grid rotations that keep input and label aligned.

Arrays are ``(C, X, Y, Z)`` per sample (``C = 1``); densities in e/Bohr^3.

Rotations. A proper rotation by multiples of 90 degrees permutes the axes and negates some of
them. On a periodic grid whose point ``i`` sits at ``i*h`` from the box corner, negating an
axis maps index ``i`` to ``(-i) mod n`` - not ``n - 1 - i`` as ``torch.flip``/``rot90`` do.
With ``flip`` the coarse point ``i`` (fine point ``2i``) lands on fine point ``2n_c - 1 - 2i``
but its coarse image on ``n_c - 1 - i``, i.e. fine ``2n_c - 2 - 2i``: the fine grid slides one
voxel against the coarse one. ``rotate_grid`` negates by ``(-i) mod n``, so the rotated coarse
input is exactly the SAD of the rotated molecule on its own coarse grid.
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
    reads a random periodic crop instead of the whole box. Test entries are refused: training
    code can never see them.

    Damaged entries (``rhosr.integrity``, quick check: metadata, shapes, chunk files) are left
    out when the dataset is made, with a warning naming each and why (``self.damaged``); damage
    found later, by a read, stops the run with :class:`~rhosr.integrity.DamagedEntryError`
    naming the entry, rather than training on zeros.
    """

    def __init__(self, store_path: str, split: str, augment: bool = False, crop: int | None = None,
                 seed: int = 0, input_name: str = "sad", ids: list[str] | None = None):
        from rhosr.store import DatasetStore

        if split not in TRAINING_SPLITS:
            raise ValueError(f"training data comes from {TRAINING_SPLITS}, never {split!r}")
        self.store_path = store_path
        self.store = DatasetStore.open(store_path)
        self.split = split
        self.ids, self.damaged = self.store.whole(ids if ids is not None else self.store.entry_ids(split))
        if self.damaged:
            import warnings

            from rhosr.errors import RhosrWarning

            for entry_id, reason in self.damaged.items():
                warnings.warn(f"{split} data: skipping damaged entry {entry_id}: {reason}", RhosrWarning,
                              stacklevel=2)
        self.augment = augment
        self.crop = crop
        self.input_name = input_name
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        entry_id = self.ids[index]
        meta = self.store.entry_meta(entry_id)
        grid = Grid.from_dict(meta["grid"])
        if self.crop:
            start = tuple(int(self.rng.integers(n)) for n in grid.coarse_mesh)
            size = tuple(min(self.crop, n) for n in grid.coarse_mesh)
            sad, label = self.store.read_crop(entry_id, start, size, self.input_name)
        else:
            entry = self.store.read_entry(entry_id, (self.input_name, "label"))
            sad, label = getattr(entry, self.input_name), entry.label
        sad = torch.as_tensor(np.asarray(sad, dtype=np.float32))[None]
        label = torch.as_tensor(np.asarray(label, dtype=np.float32))[None]
        if self.augment:
            perm, signs = ROTATIONS[int(self.rng.integers(len(ROTATIONS)))]
            sad, label = rotate_grid(sad, perm, signs), rotate_grid(label, perm, signs)
        return {"sad": sad.contiguous(), "label": label.contiguous(), "id": entry_id,
                "n_electrons": torch.tensor(float(meta["n_electrons"]), dtype=torch.float64),
                "voxel_volume": torch.tensor(grid.voxel_volume("fine"), dtype=torch.float64)}
