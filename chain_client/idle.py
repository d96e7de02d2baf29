"""Idle data: the filler behind proof of idle space.

A miner fills its unused capacity with idle units. The chain must check a commitment to
a unit cheaply, and a miner that did not keep the unit must be unable to answer a
challenge on it in time.

Layout. A unit is built in ``L = layers`` layers of ``n = leaf_count`` leaves of
``leaf_size`` bytes; only the last layer is stored, and it is the unit. ``leaf[l][i]`` is
leaf ``i`` of layer ``l``; integers are big-endian u64::

    seed       = sha256("deoss/idle-seed" 0x00 || miner_public_key(32) || unit_index
                        || anchor_hash(32))
    j(0, i)    = u64(sha256(leaf[0][i-1])[:8]) mod i                     i >= 1
    j(l, 0)    = u64(sha256("deoss/idle-back" 0x00 || seed || l)[:8]) mod n     l >= 1
    j(l, i)    = u64(sha256(leaf[l][i-1])[:8]) mod n                     l >= 1, i >= 1
    prev(l, i) = leaf[l][i-1]                   none for i = 0
    back(l, i) = leaf[l-1][j(l, i)] for l >= 1, leaf[0][j(0, i)] for l = 0; none for (0, 0)
    mix(l, i)  = scrypt(sha256(seed || l || i || prev(l, i) || back(l, i)),
                        salt="deoss/idle-leaf" || l || i, N, r, p=1, leaf_size)
    leaf[l][i] = prev(l, i) XOR back(l, i) XOR mix(l, i)       (missing terms left out)
    root[l]    = Merkle root of layer l in leaf_size leaves (``chain_client.merkle``)

Layer 0 is a single chain whose look-backs reach earlier leaves of itself (scrypt's
ROMix shape). Every later layer is a chain whose look-backs reach anywhere in the layer
below. ``root[L-1]`` is the unit root that later challenges open leaves against.

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
  layers, every leaf of the last layer hangs on look-backs spread over the whole layer
  below, each of those on the whole layer below that, and so on: rebuilding any stored
  leaf needs the unstored layers ``0..L-3`` in full, most of layer ``L-2`` and a prefix
  of the last, about ``(L - 1/2) n`` steps on average out of the ``L n`` that honest
  generation costs, whatever the index. Keeping part of the last layer barely helps: a
  missing leaf's own look-back is in layer ``L-2``, which nobody stores.
- Extra cores barely help either. A layer is a chain, and it cannot run ahead of the one
  below because its look-backs are uniform over it. The critical path of one leaf is
  about ``(L - 1) n`` steps; the cheapest leaf (index 0) needs about ``(L - 3/2) n``.

Measured (``bench/bench_idle.py``, one core of the 2-vCPU AMD EPYC build box, 64 MiB
units of 8 KiB leaves, 12 s deadline; N=2048, r=4, L=8): a step costs about 2.4 ms,
honest generation about 160 s per unit (0.42 MB/s per core), rebuilding a random
last-layer leaf from nothing about 150 s, a per-leaf factor of about 12 (about 11 with
unlimited cores, about 10.5 for the cheapest leaf); a miner that kept 90% of the last
layer still pays about 130 s per missing leaf. The factor is honest generation time
times ``(L - 1/2) / L`` over the deadline, so raising it costs honest miners the same
proportion: no N, r or L makes regeneration dearer than generation. It is measured
against this core; hardware with faster sequential scrypt shrinks it by its speed-up.

Certification. The miner publishes every layer root. ``cert_challenges`` turns the roots
into ``(layer, index)`` pairs (Fiat-Shamir), round-robin over the layers from the last
one down; for each the miner opens the leaf, its ``prev`` and its ``back`` against the
roots, and the chain recomputes the one step. That proves that the opened leaves follow
the formula from the seed, and, by sampling, that most leaves of every layer do. It does
not prove that every leaf does, nor that the miner stores anything afterwards (that is
what later leaf challenges against ``root[L-1]`` are for). Because the pairs follow from
the roots, a miner can grind: change a leaf it does not care about, recompute the roots,
draw again. A layer that gets ``s_l`` samples and has a fraction ``d`` of wrong leaves
passes one draw with probability ``(1 - d) ** s_l``. With ``s`` samples in all, a unit
whose leaves are wrong in a fraction ``d`` over all layers passes with at most
``(1 - d) ** s``; for ``s = 32`` that is 0.72 at d = 1%, 0.19 at 5%, 0.034 at 10%,
7.9e-4 at 20%, 1.1e-5 at 30% and 2.3e-10 at 50%. The last layer alone gets only
``ceil(s / L)`` of the samples (4 of 32 with L = 8: 0.66 at 10%, 0.32 at 25%), and a
wrong last-layer leaf that is cheap to compute is a leaf the miner need not store. So
``s`` must be chosen per layer, and after ``2**g`` draws a grinder passes a wrong
fraction ``d`` with ``(1 - d) ** s_l >= 2**-g``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from chain_client.merkle import (
    DIGEST_SIZE,
    MAX_LEAF_COUNT,
    Buffer,
    MerkleTree,
    leaf_hash,
    merkle_root,
    verify_path,
)

__all__ = [
    "MAX_LAYERS",
    "SCRYPT_MAXMEM",
    "IdleSpec",
    "IdleUnit",
    "LayerConsistencyProof",
    "LeafOpening",
    "cert_challenges",
    "derive_leaf",
    "generate_unit",
    "idle_seed",
    "layer_root",
    "lookback_index",
    "prove_certification",
    "prove_leaf",
    "regenerate_leaf",
    "unit_root",
    "verify_certification",
    "verify_leaf",
]

# Generous, so scrypt never refuses a valid spec; IdleSpec rejects specs that exceed it.
SCRYPT_MAXMEM = 256 * 1024 * 1024
# A unit holds all its layers in memory while it is made; beyond a few dozen that is a
# configuration mistake, and the bound keeps proofs and root lists small.
MAX_LAYERS = 32

_SEED_PREFIX = b"deoss/idle-seed\x00"
_BACK_PREFIX = b"deoss/idle-back\x00"
_LEAF_SALT = b"deoss/idle-leaf"
_CERT_PREFIX = b"deoss/idle-cert\x00"
_KEY_SIZE = 32
_MAX_U64 = 2**64 - 1
_MAX_PATH_LENGTH = (MAX_LEAF_COUNT - 1).bit_length()
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


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


def _lookback(spec: IdleSpec, seed: bytes, layer: int, index: int, prev: Buffer | None) -> int:
    # The 64-bit value's modulo bias is below 2**-32 for any unit of at most 2**32 leaves.
    if prev is None:
        digest = hashlib.sha256(_BACK_PREFIX + seed + layer.to_bytes(8, "big")).digest()
    else:
        digest = hashlib.sha256(prev).digest()
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
    """``j(layer, index)``; ``prev_leaf`` is leaf ``index - 1`` of ``layer``, None at 0."""
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
    """One step of the construction; the caller supplies ``back`` at ``j(layer, index)``."""
    _require_key(seed, "seed")
    _check_position(spec, layer, index)
    _check_leaf(spec, prev_leaf, "prev_leaf", index > 0)
    _check_leaf(spec, lookback_leaf, "lookback_leaf", layer > 0 or index > 0)
    return _derive(spec, seed, layer, index, prev_leaf, lookback_leaf)


class _LayerBuilder:
    """Layers made on demand, each as a prefix: exactly the work a rebuild must do."""

    __slots__ = ("buffers", "filled", "seed", "spec")

    def __init__(self, spec: IdleSpec, seed: bytes) -> None:
        self.spec = spec
        self.seed = seed
        # Zeroed bytearrays are mapped lazily by the OS: a partial rebuild only touches
        # the prefixes it fills.
        self.buffers = [bytearray(spec.unit_size) for _ in range(spec.layers)]
        self.filled = [0] * spec.layers

    def fill(self, layer: int, last: int) -> None:
        """Make leaves ``0..last`` of ``layer`` and whatever they depend on below."""
        spec, seed, size = self.spec, self.seed, self.spec.leaf_size
        buffer = self.buffers[layer]
        below = self.buffers[max(layer - 1, 0)]
        index = self.filled[layer]
        # The leaf just made is the next one's prev; only the first must be read back.
        prev = bytes(buffer[(index - 1) * size : index * size]) if index else None
        while index <= last:
            back: bytes | None = None
            if layer or index:
                back_index = _lookback(spec, seed, layer, index, prev)
                if layer:
                    # Recursion depth is at most the layer count.
                    self.fill(layer - 1, back_index)
                back = bytes(below[back_index * size : (back_index + 1) * size])
            prev = _derive(spec, seed, layer, index, prev, back)
            buffer[index * size : (index + 1) * size] = prev
            index += 1
            self.filled[layer] = index


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
    builder = _LayerBuilder(spec, seed)
    # Layer by layer, so every layer is complete even where no look-back reached its end.
    for layer in range(spec.layers):
        builder.fill(layer, spec.leaf_count - 1)
    layers = []
    for layer in range(spec.layers):
        layers.append(bytes(builder.buffers[layer]))
        # Copy one layer at a time: peak memory stays one layer above the unit's layers.
        builder.buffers[layer] = bytearray()
    roots = tuple(merkle_root(layer, spec.leaf_size) for layer in layers)
    return IdleUnit(seed=seed, layers=tuple(layers), layer_roots=roots)


def regenerate_leaf(spec: IdleSpec, seed: bytes, index: int) -> bytes:
    """Last-layer leaf ``index`` from nothing, as a prover that kept nothing must.

    Makes only what the leaf depends on: a prefix of the last layer and of each layer
    below, which the uniform look-backs stretch to nearly whole layers.
    """
    _require_key(seed, "seed")
    last = spec.layers - 1
    _check_position(spec, last, index)
    builder = _LayerBuilder(spec, seed)
    builder.fill(last, index)
    size = spec.leaf_size
    return bytes(builder.buffers[last][index * size : (index + 1) * size])


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


def _expect_keys(obj: object, keys: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(obj).__name__}")
    if set(obj) != keys:
        raise ValueError(f"{what} must have exactly the keys {sorted(keys)}, got {sorted(obj)}")
    return obj


@dataclass(frozen=True, slots=True)
class LeafOpening:
    """One leaf with its Merkle path; JSON carries the leaf in base64, hashes in hex."""

    index: int
    leaf: bytes
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if type(self.index) is not int or not 0 <= self.index < MAX_LEAF_COUNT:
            raise ValueError(f"leaf index must be an int in [0, 2**32), got {self.index!r}")
        if not isinstance(self.leaf, bytes) or not self.leaf:
            raise ValueError("leaf must be non-empty bytes")
        if not isinstance(self.path, tuple) or len(self.path) > _MAX_PATH_LENGTH:
            raise ValueError(f"path must be a tuple of at most {_MAX_PATH_LENGTH} hashes")
        for depth, node in enumerate(self.path):
            if not isinstance(node, bytes) or len(node) != DIGEST_SIZE:
                raise ValueError(f"path hash {depth} is not {DIGEST_SIZE} bytes")

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf": base64.b64encode(self.leaf).decode("ascii"),
            "path": [node.hex() for node in self.path],
        }

    @classmethod
    def from_json(cls, obj: object) -> Self:
        fields = _expect_keys(obj, frozenset({"index", "leaf", "path"}), "leaf opening")
        leaf_text, path_text = fields["leaf"], fields["path"]
        if not isinstance(leaf_text, str):
            raise ValueError("leaf must be a base64 string")
        try:
            leaf = base64.b64decode(leaf_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"leaf is not valid base64: {exc}") from None
        # Exactly one encoding per leaf: no missing padding, no stray bits in the last char.
        if base64.b64encode(leaf).decode("ascii") != leaf_text:
            raise ValueError("leaf is not canonical padded base64")
        if not isinstance(path_text, list) or len(path_text) > _MAX_PATH_LENGTH:
            raise ValueError(f"path must be a list of at most {_MAX_PATH_LENGTH} hashes")
        path = []
        for depth, node in enumerate(path_text):
            if not isinstance(node, str) or not _HEX_DIGEST.fullmatch(node):
                raise ValueError(f"path hash {depth} is not 64 lowercase hex characters")
            path.append(bytes.fromhex(node))
        return cls(fields["index"], leaf, tuple(path))


def _opening_json(opening: LeafOpening | None) -> dict[str, Any] | None:
    return None if opening is None else opening.to_json()


def _opening_from_json(obj: object) -> LeafOpening | None:
    return None if obj is None else LeafOpening.from_json(obj)


def _leaf_of(opening: LeafOpening | None) -> bytes | None:
    return None if opening is None else opening.leaf


@dataclass(frozen=True, slots=True)
class LayerConsistencyProof:
    """Leaf ``(layer, i)`` with the leaves it was derived from.

    ``leaf`` and ``prev`` open against ``root[layer]``, ``lookback`` against
    ``root[layer - 1]`` (layer 0's own root for layer 0).
    """

    layer: int
    leaf: LeafOpening
    prev: LeafOpening | None
    lookback: LeafOpening | None

    def __post_init__(self) -> None:
        if type(self.layer) is not int or not 0 <= self.layer < MAX_LAYERS:
            raise ValueError(f"layer must be an int in [0, {MAX_LAYERS}), got {self.layer!r}")
        openings = (self.leaf, self.prev, self.lookback)
        if not isinstance(self.leaf, LeafOpening) or not all(
            opening is None or isinstance(opening, LeafOpening) for opening in openings
        ):
            raise ValueError("a consistency proof is made of leaf openings")
        index = self.leaf.index
        if index == 0 and self.prev is not None:
            raise ValueError("leaf 0 of a layer has no prev")
        if index > 0:
            if self.prev is None:
                raise ValueError(f"leaf {index} needs its prev opening")
            if self.prev.index != index - 1:
                raise ValueError(
                    f"prev of leaf {index} must be leaf {index - 1}, got {self.prev.index}"
                )
        if self.layer == 0 and index == 0:
            if self.lookback is not None:
                raise ValueError("leaf 0 of layer 0 comes from the seed alone: no lookback")
            return
        if self.lookback is None:
            raise ValueError(f"leaf {index} of layer {self.layer} needs its lookback opening")
        if self.layer == 0 and self.lookback.index >= index:
            raise ValueError(
                f"lookback of leaf {index} in layer 0 must be an earlier leaf, "
                f"got {self.lookback.index}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "leaf": self.leaf.to_json(),
            "prev": _opening_json(self.prev),
            "lookback": _opening_json(self.lookback),
        }

    @classmethod
    def from_json(cls, obj: object) -> Self:
        keys = frozenset({"layer", "leaf", "prev", "lookback"})
        fields = _expect_keys(obj, keys, "layer consistency proof")
        return cls(
            fields["layer"],
            LeafOpening.from_json(fields["leaf"]),
            _opening_from_json(fields["prev"]),
            _opening_from_json(fields["lookback"]),
        )


def prove_leaf(tree: MerkleTree, data: Buffer, leaf_size: int, index: int) -> LeafOpening:
    start = index * leaf_size
    leaf = bytes(memoryview(data)[start : start + leaf_size])
    # A prover must not submit a leaf its own commitment disowns (bitrot, wrong file).
    if leaf_hash(leaf) != tree.leaf_hash(index):
        raise ValueError(f"leaf {index} of the data does not match the tree")
    return LeafOpening(index, leaf, tuple(tree.path(index)))


def verify_leaf(
    root: bytes, leaf_count: int, leaf_size: int, opening: LeafOpening, expected_index: int
) -> bool:
    if not isinstance(opening, LeafOpening) or opening.index != expected_index:
        return False
    if len(opening.leaf) != leaf_size:
        return False
    return verify_path(leaf_hash(opening.leaf), opening.index, leaf_count, opening.path, root)


def _checked_roots(layer_roots: Sequence[bytes]) -> tuple[bytes, ...]:
    if not isinstance(layer_roots, Sequence) or not 1 <= len(layer_roots) <= MAX_LAYERS:
        raise ValueError(f"layer_roots must be a sequence of 1 to {MAX_LAYERS} roots")
    for layer, root in enumerate(layer_roots):
        _require_key(root, f"layer_roots[{layer}]")
    return tuple(layer_roots)


def cert_challenges(
    layer_roots: Sequence[bytes],
    miner_public_key: bytes,
    unit_index: int,
    count: int,
    leaf_count: int,
) -> list[tuple[int, int]]:
    """``count`` distinct ``(layer, index)`` pairs to check when a unit is certified.

    Fiat-Shamir: they follow from every layer root, so they are fixed only once all
    layers are. Draw ``k`` goes to layer ``L - 1 - k mod L``: every layer is checked, and
    the last layer, the one later challenged, gets any extra.
    """
    roots = _checked_roots(layer_roots)
    _require_key(miner_public_key, "miner_public_key")
    encoded_index = _u64(unit_index, "unit_index")
    if type(leaf_count) is not int or not 1 <= leaf_count <= MAX_LEAF_COUNT:
        raise ValueError(f"leaf_count must be in [1, 2**32], got {leaf_count!r}")
    layers = len(roots)
    if type(count) is not int or not 0 <= count <= layers * leaf_count:
        raise ValueError(
            f"count must be in [0, layers * leaf_count = {layers * leaf_count}], got {count!r}"
        )
    # The layer count first, though fixed-size roots already make the input unambiguous.
    encoded_layers = layers.to_bytes(8, "big")
    prefix = _CERT_PREFIX + encoded_layers + b"".join(roots) + miner_public_key + encoded_index
    chosen: dict[tuple[int, int], None] = {}
    counter = 0
    while len(chosen) < count:
        layer = layers - 1 - len(chosen) % layers
        digest = hashlib.sha256(prefix + counter.to_bytes(8, "big")).digest()
        # A repeat is simply redrawn for the same layer with the next counter.
        chosen.setdefault((layer, int.from_bytes(digest[:8], "big") % leaf_count))
        counter += 1
    return list(chosen)


def prove_certification(
    spec: IdleSpec, unit: IdleUnit, challenges: Sequence[tuple[int, int]]
) -> list[LayerConsistencyProof]:
    if (
        not isinstance(unit, IdleUnit)
        or len(unit.layers) != spec.layers
        or len(unit.data) != spec.unit_size
    ):
        raise ValueError("the unit is not an idle unit of this spec")
    size = spec.leaf_size
    trees: dict[int, MerkleTree] = {}

    def open_leaf(layer: int, index: int) -> LeafOpening:
        if layer not in trees:
            trees[layer] = MerkleTree.from_data(unit.layers[layer], size)
        return prove_leaf(trees[layer], unit.layers[layer], size, index)

    proofs = []
    for layer, index in challenges:
        _check_position(spec, layer, index)
        opening = open_leaf(layer, index)
        prev = open_leaf(layer, index - 1) if index else None
        lookback = None
        if layer or index:
            back_index = _lookback(spec, unit.seed, layer, index, _leaf_of(prev))
            lookback = open_leaf(max(layer - 1, 0), back_index)
        proofs.append(LayerConsistencyProof(layer, opening, prev, lookback))
    return proofs


def _openings_in_tree(
    spec: IdleSpec,
    seed: bytes,
    roots: Sequence[bytes],
    proof: object,
    challenge: object,
) -> bool:
    """Everything about one proof except the scrypt step: shapes, paths, the look-back."""
    if not isinstance(challenge, tuple) or len(challenge) != 2:
        return False
    layer, index = challenge
    if type(layer) is not int or type(index) is not int:
        return False
    if not (0 <= layer < spec.layers and 0 <= index < spec.leaf_count):
        return False
    if not isinstance(proof, LayerConsistencyProof) or proof.layer != layer:
        return False
    count, size = spec.leaf_count, spec.leaf_size
    if not verify_leaf(roots[layer], count, size, proof.leaf, index):
        return False
    prev = proof.prev
    if index and (prev is None or not verify_leaf(roots[layer], count, size, prev, index - 1)):
        return False
    if layer == 0 and index == 0:
        return proof.lookback is None
    if proof.lookback is None:
        return False
    back_index = _lookback(spec, seed, layer, index, _leaf_of(prev))
    return verify_leaf(roots[max(layer - 1, 0)], count, size, proof.lookback, back_index)


def verify_certification(
    spec: IdleSpec,
    seed: bytes,
    layer_roots: Sequence[bytes],
    proofs: Sequence[LayerConsistencyProof],
    challenges: Sequence[tuple[int, int]],
) -> bool:
    """Whether every challenged leaf is in its layer and derived correctly.

    Never raises. Every Merkle check runs before any scrypt step: they are cheap, the
    steps are not, so a bad proof costs the chain little.
    """
    if not isinstance(spec, IdleSpec) or not _is_key(seed):
        return False
    if not isinstance(layer_roots, Sequence) or len(layer_roots) != spec.layers:
        return False
    if not all(_is_key(root) for root in layer_roots):
        return False
    if not isinstance(proofs, Sequence) or not isinstance(challenges, Sequence):
        return False
    if len(proofs) != len(challenges):
        return False
    for proof, challenge in zip(proofs, challenges, strict=True):
        if not _openings_in_tree(spec, seed, layer_roots, proof, challenge):
            return False
    for proof in proofs:
        prev, back = _leaf_of(proof.prev), _leaf_of(proof.lookback)
        if proof.leaf.leaf != _derive(spec, seed, proof.layer, proof.leaf.index, prev, back):
            return False
    return True
