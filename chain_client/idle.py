"""Idle data: the filler behind proof of idle space.

A miner fills its unused capacity with idle units. The chain must check a commitment to
a unit cheaply, and a miner that did not keep the unit must be unable to answer a
challenge on it in time. This module makes units; ``chain_client.idle_proofs`` opens
their leaves, certifies them and states the sampling bounds.

Layout. A unit is built in ``L = layers`` layers of ``n = leaf_count`` leaves of
``leaf_size`` bytes; only the last layer is stored, and it is the unit. ``leaf[l][i]`` is
leaf ``i`` of layer ``l``; integers are big-endian u64::

    seed       = sha256("deoss/idle-seed" 0x00 || miner_public_key(32) || unit_index
                        || anchor_hash(32))
    j(0, i)    = u64(sha256(leaf[0][i-1])[:8]) mod i                     i >= 1
    j(l, 0)    = u64(sha256("deoss/idle-back" 0x00 || seed || l)[:8]) mod n     l >= 1
    j(l, i)    = u64(sha256(leaf[l][i-1])[:8]) mod n                     l >= 1, i >= 1
    prev(l, i) = leaf[l][i-1] for i >= 1; leaf[l-1][n-1] for i = 0, l >= 1; none for (0, 0)
    back(l, i) = leaf[l-1][j(l, i)] for l >= 1, leaf[0][j(0, i)] for l = 0; none for (0, 0)
    mix(l, i)  = scrypt(sha256(seed || l || i || prev(l, i) || back(l, i)),
                        salt="deoss/idle-leaf" || l || i, N, r, p=1, leaf_size)
    leaf[l][i] = prev(l, i) XOR back(l, i) XOR mix(l, i)       (missing terms left out)
    root[l]    = Merkle root of layer l in leaf_size leaves (``chain_client.merkle``)

Layer 0 is a single chain whose look-backs reach earlier leaves of itself (scrypt's
ROMix shape). Every later layer continues that chain from the last leaf of the layer
below, and its look-backs reach anywhere in the layer below: the whole unit is one chain
of ``L n`` steps. ``j(l, 0)`` comes from the seed, not from ``prev(l, 0)``; the ``prev``
already ties leaf 0 to the whole layer below. ``root[L-1]`` is the unit root that later
challenges open leaves against.

Why this shape:

- ``anchor_hash`` is a recent block hash, so no unit can be made before that block, and
  the miner's key and the unit index make every unit distinct: nothing is shared or
  precomputed across miners or units.
- A leaf is a function of whole leaves, not of their digests, so keeping hashes or
  seeds instead of leaves does not help; the look-back index depends on the previous
  leaf's bytes, so a rebuild cannot know in advance which leaves it will need.
- Why layers. With one layer, rebuilding leaf ``i`` replays leaves ``0..i``: half a
  unit on average, and a miner that kept a tenth of the leaves rebuilds a missing one
  from the nearest kept ones in a few thousand steps instead of a unit's worth. With
  layers, every stored leaf has a look-back into layer ``L-2``, which nobody stores.
- Why leaf 0 of a layer chains to the end of the layer below. Then any leaf of layer
  ``l >= 1`` needs all of layers ``0..l-1``: rebuilding last-layer leaf ``i`` from
  nothing costs exactly ``(L-1) n + i + 1`` steps, ``(L - 1/2) n`` on average out of the
  ``L n`` that honest generation costs, and never less than ``(L-1) n``. Without the
  chain, leaf 0 hung on one look-back that lands mid-layer on average: the cheapest leaf
  cost about ``(L - 3/2) n``, and any leaf's cost depended on where its look-backs fell.
  Keeping part of the last layer barely helps: a missing leaf's look-back ``j`` in
  layer ``L-2`` still costs ``(L-2) n + j + 1`` steps.
- Extra cores do not help at all: the unit is one chain, so the critical path of a leaf
  with unlimited cores is its one-core rebuild.

Measured (``bench/bench_idle.py``, one core of the 2-vCPU AMD EPYC build box, whose speed
drifts by a fifth or more from minute to minute; 64 MiB units of 8 KiB leaves, 12 s
deadline; N=2048, r=6, L=7). Step counts are exact: honest generation is 57344 steps, and
rebuilding a last-layer leaf from nothing 49153 to 57344, 53248 on average (93% of
generation), on any number of cores. A step costs 2.7 to 3.1 ms in full runs and 3.1 to
3.8 ms in ``--quick`` ones: generation takes 155 to 218 s per unit (0.31 to 0.43 MB/s per
core), and the per-leaf factor is 12 to 16.7 on average, 11.1 to 15.5 for the cheapest
leaf (4.4 and 4.1 per ms of step). A miner that kept 90% of the last layer still pays
about 45300 steps per missing leaf (factor 10.2 at 2.7 ms); with one layer it would pay
one step. The factor is about ``(L - 1/2) / L`` of honest generation over the deadline,
and at least ``(L - 1) / L`` of it for every leaf, whatever N, r and L: each unit of
factor costs an honest miner about 13 s of generation per 64 MiB unit. It is measured
against this core; hardware with faster sequential scrypt shrinks it by its speed-up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from chain_client.merkle import DIGEST_SIZE, MAX_LEAF_COUNT, Buffer, merkle_root

__all__ = [
    "MAX_LAYERS",
    "SCRYPT_MAXMEM",
    "IdleSpec",
    "IdleUnit",
    "derive_leaf",
    "generate_unit",
    "idle_seed",
    "layer_root",
    "lookback_index",
    "regenerate_leaf",
    "unit_root",
]

# Generous, so scrypt never refuses a valid spec; IdleSpec rejects specs that exceed it.
SCRYPT_MAXMEM = 256 * 1024 * 1024
# A unit holds all its layers in memory while it is made; beyond a few dozen that is a
# configuration mistake, and the bound keeps root lists small. Matches NetworkParams.
MAX_LAYERS = 64

_SEED_PREFIX = b"deoss/idle-seed\x00"
_BACK_PREFIX = b"deoss/idle-back\x00"
_LEAF_SALT = b"deoss/idle-leaf"
_KEY_SIZE = 32
_MAX_U64 = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleSpec:
    unit_size: int
    leaf_size: int
    scrypt_n: int
    scrypt_r: int
    layers: int

    def __post_init__(self) -> None:
        for name in ("unit_size", "leaf_size", "scrypt_n", "scrypt_r", "layers"):
            value = getattr(self, name)
            if type(value) is not int:
                raise ValueError(f"IdleSpec.{name} must be an int, got {value!r}")
        if self.leaf_size < 64 or self.leaf_size % 64:
            raise ValueError(
                f"IdleSpec.leaf_size must be a positive multiple of 64, got {self.leaf_size}"
            )
        if self.unit_size < 1 or self.unit_size % self.leaf_size:
            raise ValueError(
                f"IdleSpec.unit_size must be a positive multiple of leaf_size "
                f"({self.leaf_size}), got {self.unit_size}"
            )
        if self.leaf_count > MAX_LEAF_COUNT:
            raise ValueError(f"IdleSpec.unit_size {self.unit_size} makes more than 2**32 leaves")
        if not 1 <= self.layers <= MAX_LAYERS:
            raise ValueError(f"IdleSpec.layers must be in [1, {MAX_LAYERS}], got {self.layers}")
        if self.scrypt_n < 2 or self.scrypt_n & (self.scrypt_n - 1):
            raise ValueError(f"IdleSpec.scrypt_n must be a power of two >= 2, got {self.scrypt_n}")
        if self.scrypt_r < 1:
            raise ValueError(f"IdleSpec.scrypt_r must be >= 1, got {self.scrypt_r}")
        # OpenSSL's own limits, checked here so a bad spec fails when loaded, not mid-unit.
        if self.scrypt_n.bit_length() - 1 >= 16 * self.scrypt_r:
            raise ValueError(
                f"IdleSpec.scrypt_n must be below 2**(16 * scrypt_r), got {self.scrypt_n}"
            )
        if 128 * self.scrypt_r * (self.scrypt_n + 3) > SCRYPT_MAXMEM:
            raise ValueError(
                f"IdleSpec.scrypt_n * scrypt_r needs more than {SCRYPT_MAXMEM} bytes, "
                f"got scrypt_n={self.scrypt_n}, scrypt_r={self.scrypt_r}"
            )

    @property
    def leaf_count(self) -> int:
        return self.unit_size // self.leaf_size


def _u64(value: int, name: str) -> bytes:
    if type(value) is not int or not 0 <= value <= _MAX_U64:
        raise ValueError(f"{name} must be an int in [0, 2**64), got {value!r}")
    return value.to_bytes(8, "big")


def _is_key(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == _KEY_SIZE


def _require_key(value: object, name: str) -> None:
    # SECURITY: fixed sizes keep every concatenation below unambiguous.
    if not _is_key(value):
        raise ValueError(f"{name} must be {_KEY_SIZE} bytes, got {value!r}")


def idle_seed(miner_public_key: bytes, unit_index: int, anchor_hash: bytes) -> bytes:
    _require_key(miner_public_key, "miner_public_key")
    _require_key(anchor_hash, "anchor_hash")
    encoded_index = _u64(unit_index, "unit_index")
    return hashlib.sha256(_SEED_PREFIX + miner_public_key + encoded_index + anchor_hash).digest()


def _lookback(spec: IdleSpec, seed: bytes, layer: int, index: int, before: Buffer | None) -> int:
    """``j(layer, index)``; ``before`` is leaf ``index - 1`` of the same layer, None at 0."""
    # The 64-bit value's modulo bias is below 2**-32 for any unit of at most 2**32 leaves.
    if before is None:
        digest = hashlib.sha256(_BACK_PREFIX + seed + layer.to_bytes(8, "big")).digest()
    else:
        digest = hashlib.sha256(before).digest()
    # Layer 0 looks back into itself, so only at leaves already made; later layers reach
    # the whole layer below.
    return int.from_bytes(digest[:8], "big") % (index if layer == 0 else spec.leaf_count)


def _derive(
    spec: IdleSpec,
    seed: bytes,
    layer: int,
    index: int,
    prev: Buffer | None,
    back: Buffer | None,
) -> bytes:
    position = layer.to_bytes(8, "big") + index.to_bytes(8, "big")
    password = hashlib.sha256(seed + position)
    # Which of prev and back exist follows from (layer, index), and both are leaf_size
    # bytes, so the hash input is unambiguous.
    combined = 0
    for part in (prev, back):
        if part is not None:
            password.update(part)
            # XOR of whole leaves as big integers: one C-level operation, not a byte loop.
            combined ^= int.from_bytes(part, "big")
    mix = hashlib.scrypt(
        password.digest(),
        salt=_LEAF_SALT + position,
        n=spec.scrypt_n,
        r=spec.scrypt_r,
        p=1,
        maxmem=SCRYPT_MAXMEM,
        dklen=spec.leaf_size,
    )
    return (combined ^ int.from_bytes(mix, "big")).to_bytes(spec.leaf_size, "big")


def _check_position(spec: IdleSpec, layer: int, index: int) -> None:
    if type(layer) is not int or not 0 <= layer < spec.layers:
        raise ValueError(f"layer must be in [0, {spec.layers}), got {layer!r}")
    if type(index) is not int or not 0 <= index < spec.leaf_count:
        raise ValueError(f"leaf index must be in [0, {spec.leaf_count}), got {index!r}")


def _check_leaf(spec: IdleSpec, leaf: Buffer | None, name: str, needed: bool) -> None:
    if needed and (leaf is None or memoryview(leaf).nbytes != spec.leaf_size):
        raise ValueError(f"{name} must be {spec.leaf_size} bytes here")
    if not needed and leaf is not None:
        raise ValueError(f"{name} must be None here")


def lookback_index(
    spec: IdleSpec, seed: bytes, layer: int, index: int, prev_leaf: Buffer | None
) -> int:
    """``j(layer, index)``; ``prev_leaf`` is leaf ``index - 1`` of ``layer``, None at 0.

    At index 0 the look-back comes from the seed, so the last leaf of the layer below,
    which is ``prev(layer, 0)`` for ``derive_leaf``, is not passed here.
    """
    _require_key(seed, "seed")
    _check_position(spec, layer, index)
    if layer == 0 and index == 0:
        raise ValueError("leaf 0 of layer 0 comes from the seed alone: it has no look-back")
    _check_leaf(spec, prev_leaf, "prev_leaf", index > 0)
    return _lookback(spec, seed, layer, index, prev_leaf)


def derive_leaf(
    spec: IdleSpec,
    seed: bytes,
    layer: int,
    index: int,
    prev_leaf: Buffer | None,
    lookback_leaf: Buffer | None,
) -> bytes:
    """One step of the construction: ``prev_leaf`` is ``prev(layer, index)`` (the last
    leaf of the layer below at index 0), ``lookback_leaf`` the leaf at ``j(layer, index)``.
    """
    _require_key(seed, "seed")
    _check_position(spec, layer, index)
    has_inputs = layer > 0 or index > 0
    _check_leaf(spec, prev_leaf, "prev_leaf", has_inputs)
    _check_leaf(spec, lookback_leaf, "lookback_leaf", has_inputs)
    return _derive(spec, seed, layer, index, prev_leaf, lookback_leaf)


def _build_layer(
    spec: IdleSpec, seed: bytes, layer: int, below: bytearray | None, last: int
) -> bytearray:
    """Leaves ``0..last`` of ``layer``; ``below`` is the whole layer under it, None for 0."""
    size = spec.leaf_size
    made = bytearray((last + 1) * size)
    # Layer 0 looks back into itself; leaf 0 of a later layer continues the chain from
    # the last leaf of the layer below.
    source = made if below is None else below
    prev: Buffer | None = None if below is None else below[-size:]
    for index in range(last + 1):
        back = None
        if layer or index:
            back_index = _lookback(spec, seed, layer, index, prev if index else None)
            back = source[back_index * size : (back_index + 1) * size]
        leaf = _derive(spec, seed, layer, index, prev, back)
        made[index * size : (index + 1) * size] = leaf
        prev = leaf
    return made


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleUnit:
    """Every layer of one unit. Once certified the miner keeps ``data`` and drops the rest."""

    seed: bytes
    # Hundreds of MiB: never in a repr.
    layers: tuple[bytes, ...] = field(repr=False)
    layer_roots: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _require_key(self.seed, "seed")
        if not isinstance(self.layers, tuple) or not 1 <= len(self.layers) <= MAX_LAYERS:
            raise ValueError(f"an idle unit has 1 to {MAX_LAYERS} layers in a tuple")
        if not all(isinstance(layer, bytes) and layer for layer in self.layers):
            raise ValueError("every layer must be non-empty bytes")
        if len({len(layer) for layer in self.layers}) != 1:
            raise ValueError("every layer of a unit has the same size")
        if not isinstance(self.layer_roots, tuple) or len(self.layer_roots) != len(self.layers):
            raise ValueError("an idle unit has one root per layer, in a tuple")
        if not all(_is_key(root) for root in self.layer_roots):
            raise ValueError(f"every layer root must be {DIGEST_SIZE} bytes")

    @property
    def data(self) -> bytes:
        return self.layers[-1]

    @property
    def root(self) -> bytes:
        return self.layer_roots[-1]


def generate_unit(spec: IdleSpec, seed: bytes) -> IdleUnit:
    """All layers of a unit. CPU-bound for minutes at network sizes: call it in a thread."""
    _require_key(seed, "seed")
    layers: list[bytes] = []
    below = None
    for layer in range(spec.layers):
        below = _build_layer(spec, seed, layer, below, spec.leaf_count - 1)
        # One working copy at a time: peak memory stays one layer above the unit's layers.
        layers.append(bytes(below))
    roots = tuple(merkle_root(layer, spec.leaf_size) for layer in layers)
    return IdleUnit(seed=seed, layers=tuple(layers), layer_roots=roots)


def regenerate_leaf(spec: IdleSpec, seed: bytes, index: int) -> bytes:
    """Last-layer leaf ``index`` from nothing, as a prover that kept nothing must.

    That is every layer below in full and the last layer up to ``index``: ``(L-1) n +
    index + 1`` steps. Only the layer below is kept, so memory is two layers, not ``L``.
    """
    _require_key(seed, "seed")
    last = spec.layers - 1
    _check_position(spec, last, index)
    below = None
    for layer in range(last):
        below = _build_layer(spec, seed, layer, below, spec.leaf_count - 1)
    return bytes(_build_layer(spec, seed, last, below, index)[-spec.leaf_size :])


def layer_root(spec: IdleSpec, data: Buffer) -> bytes:
    """The root of one stored layer, e.g. to check the unit still on disk."""
    if memoryview(data).nbytes != spec.unit_size:
        raise ValueError(f"an idle layer is {spec.unit_size} bytes, got {memoryview(data).nbytes}")
    return merkle_root(data, spec.leaf_size)


def unit_root(unit_or_layer_roots: IdleUnit | Sequence[bytes]) -> bytes:
    """The root later challenges open leaves against: the last layer's."""
    if isinstance(unit_or_layer_roots, IdleUnit):
        return unit_or_layer_roots.root
    roots = unit_or_layer_roots
    if not isinstance(roots, Sequence) or not roots or not _is_key(roots[-1]):
        raise ValueError(f"layer roots must be a non-empty sequence of {DIGEST_SIZE}-byte roots")
    return roots[-1]
