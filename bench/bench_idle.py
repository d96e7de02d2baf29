"""How much harder it is to fake an idle unit than to store it.

Measures, on this machine and single-threaded:

- honest generation of one idle unit (MB/s);
- regenerating a challenged leaf from nothing, which means replaying the unit's chain up
  to that leaf: on average (leaf_count + 1) / 2 steps;
- the factor: the expected time a prover that stored nothing needs to answer K challenged
  leaves from K distinct units, over the challenge deadline (and the same for one leaf),
  and the step cost a target per-leaf factor would need;
- what a prover that kept a random part of the unit pays per missing leaf, in steps.

The per-leaf factor is honest generation time over twice the deadline, whatever N and r:
replaying half a unit is half the work of making it. The K-unit factor is per core: a
faker can replay K units on K cores at once, so divide it by the cores it has; one
unit's replay is sequential.

    python bench/bench_idle.py [--quick] [--unit-size BYTES] [--scrypt-n N] [--scrypt-r R]
                               [--deadline-seconds S] [--samples K] [--sweep]
                               [--target-factor F]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from chain_client.idle import (
    IdleSpec,
    generate_unit,
    idle_seed,
    lookback_index,
    regenerate_leaf,
)

__all__ = [
    "IdleMeasurement",
    "main",
    "measure",
    "measure_step",
    "partial_storage_steps",
]

MIB = 1024 * 1024
# About a millisecond per 8 KiB step on the 2-vCPU EPYC build box (see --sweep).
DEFAULT_SCRYPT_N = 1024
DEFAULT_SCRYPT_R = 4
# CESS's shortest idle-proof slip is 50 blocks of 6 s.
DEFAULT_DEADLINE_SECONDS = 300.0
# CESS challenges idle space with 8 random values (SpaceChallengeParam = [u64; 8]).
DEFAULT_SAMPLES = 8
QUICK_SAMPLE_LEAVES = 256
SWEEP = ((256, 8), (512, 4), (512, 8), (1024, 4), (1024, 8), (2048, 2), (2048, 4), (4096, 2))
KEEP_FRACTIONS = (0.9, 0.5, 0.25, 0.1)
_BENCH_SEED = idle_seed(bytes(32), 0, hashlib.sha256(b"deoss/bench-idle").digest())


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleMeasurement:
    spec: IdleSpec
    measured_leaves: int
    # Seconds per leaf step while generating honestly.
    step_seconds: float
    generation_seconds: float
    # Seconds per step while replaying from nothing (includes the replay's own allocation).
    regen_step_seconds: float
    # Expected seconds to regenerate one uniformly chosen leaf from nothing.
    regen_leaf_seconds: float

    @property
    def extrapolated(self) -> bool:
        return self.measured_leaves < self.spec.leaf_count

    @property
    def generation_mb_per_s(self) -> float:
        return self.spec.unit_size / self.generation_seconds / 1e6

    def per_leaf_factor(self, deadline_seconds: float) -> float:
        return self.regen_leaf_seconds / deadline_seconds

    def factor(self, deadline_seconds: float, samples: int) -> float:
        """Single-core time to fake ``samples`` leaves of distinct units, over the deadline."""
        return samples * self.regen_leaf_seconds / deadline_seconds


def _timed_regeneration(spec: IdleSpec, index: int) -> float:
    started = time.perf_counter()
    regenerate_leaf(spec, _BENCH_SEED, index)
    return time.perf_counter() - started


def measure(
    spec: IdleSpec, *, sample_leaves: int, regen_trials: int = 3, seed: int = 0
) -> IdleMeasurement:
    """Time a unit's generation and replay; below ``spec.leaf_count`` leaves, extrapolate.

    Per-step costs do not depend on the index (scrypt dominates), so a prefix of
    ``sample_leaves`` steps stands for the whole unit.
    """
    count = spec.leaf_count
    expected_steps = (count + 1) / 2  # replaying to leaf i takes i + 1 steps
    if sample_leaves < count:
        replay_seconds = _timed_regeneration(spec, max(sample_leaves, 1) - 1)
        step = replay_seconds / max(sample_leaves, 1)
        return IdleMeasurement(
            spec=spec,
            measured_leaves=max(sample_leaves, 1),
            step_seconds=step,
            generation_seconds=step * count,
            regen_step_seconds=step,
            regen_leaf_seconds=step * expected_steps,
        )
    started = time.perf_counter()
    generate_unit(spec, _BENCH_SEED)
    generation = time.perf_counter() - started
    rng = random.Random(seed)
    regen_steps = []
    for _ in range(regen_trials):
        index = rng.randrange(count)
        regen_steps.append(_timed_regeneration(spec, index) / (index + 1))
    regen_step = sum(regen_steps) / len(regen_steps) if regen_steps else generation / count
    return IdleMeasurement(
        spec=spec,
        measured_leaves=count,
        step_seconds=generation / count,
        generation_seconds=generation,
        regen_step_seconds=regen_step,
        regen_leaf_seconds=regen_step * expected_steps,
    )


def measure_step(leaf_size: int, scrypt_n: int, scrypt_r: int, *, steps: int = 200) -> float:
    """Seconds per leaf step for these scrypt parameters."""
    spec = IdleSpec(
        unit_size=leaf_size * (steps + 1),
        leaf_size=leaf_size,
        scrypt_n=scrypt_n,
        scrypt_r=scrypt_r,
    )
    return _timed_regeneration(spec, steps) / (steps + 1)


def partial_storage_steps(
    leaf_count: int, keep_fractions: Sequence[float], *, trials: int = 200, seed: int = 0
) -> dict[float, float]:
    """Mean steps to rebuild a missing leaf when a random fraction of leaves was kept.

    The look-back graph does not depend on the scrypt cost, so it is taken from a unit
    generated with the cheapest parameters; a rebuild recomputes every missing leaf the
    target transitively needs, each once.
    """
    cheap = IdleSpec(unit_size=64 * leaf_count, leaf_size=64, scrypt_n=2, scrypt_r=1)
    unit = generate_unit(cheap, _BENCH_SEED)
    lookback = [0] + [lookback_index(unit[(i - 1) * 64 : i * 64], i) for i in range(1, leaf_count)]
    rng = random.Random(seed)
    results = {}
    for keep in keep_fractions:
        kept = [rng.random() < keep for _ in range(leaf_count)]
        costs = []
        for _ in range(trials):
            target = rng.randrange(leaf_count)
            needed: set[int] = set()
            pending = [target]
            while pending:
                leaf = pending.pop()
                if kept[leaf] or leaf in needed:
                    continue
                needed.add(leaf)
                if leaf:
                    pending += (leaf - 1, lookback[leaf])
            if needed:
                costs.append(len(needed))
        results[keep] = sum(costs) / len(costs) if costs else 0.0
    return results


def _print_lines(lines: Sequence[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}: {value}")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--unit-size", type=int, default=64 * MIB)
    parser.add_argument("--leaf-size", type=int, default=8192)
    parser.add_argument("--scrypt-n", type=int, default=DEFAULT_SCRYPT_N)
    parser.add_argument("--scrypt-r", type=int, default=DEFAULT_SCRYPT_R)
    parser.add_argument("--deadline-seconds", type=float, default=DEFAULT_DEADLINE_SECONDS)
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--regen-trials", type=int, default=3)
    parser.add_argument(
        "--target-factor",
        type=float,
        default=10.0,
        help="also print the leaf step a per-leaf factor this large would need",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"time {QUICK_SAMPLE_LEAVES} steps and extrapolate to the unit",
    )
    parser.add_argument(
        "--sweep", action="store_true", help="also time one step for a few scrypt N and r"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        spec = IdleSpec(
            unit_size=args.unit_size,
            leaf_size=args.leaf_size,
            scrypt_n=args.scrypt_n,
            scrypt_r=args.scrypt_r,
        )
    except ValueError as exc:
        raise SystemExit(f"bench_idle: {exc}") from None
    sample_leaves = QUICK_SAMPLE_LEAVES if args.quick else spec.leaf_count
    result = measure(spec, sample_leaves=sample_leaves, regen_trials=args.regen_trials)
    how = f"extrapolated from {result.measured_leaves} steps" if result.extrapolated else "measured"
    lines = [
        ("unit", f"{spec.unit_size} B = {spec.leaf_count} leaves of {spec.leaf_size} B"),
        (
            "scrypt",
            f"N={spec.scrypt_n} r={spec.scrypt_r} ({128 * spec.scrypt_n * spec.scrypt_r} B)",
        ),
        ("leaf step", f"{result.step_seconds * 1e3:.3f} ms"),
        ("generation", f"{result.generation_seconds:.2f} s ({how})"),
        ("generation throughput", f"{result.generation_mb_per_s:.2f} MB/s"),
        ("replay step", f"{result.regen_step_seconds * 1e3:.3f} ms"),
        ("regenerate one leaf", f"{result.regen_leaf_seconds:.2f} s (expected, from nothing)"),
        ("deadline", f"{args.deadline_seconds:g} s"),
        ("per-leaf factor", f"{result.per_leaf_factor(args.deadline_seconds):.3f}"),
        (
            f"factor, {args.samples} units",
            f"{result.factor(args.deadline_seconds, args.samples):.3f} (single core)",
        ),
    ]
    # Per-leaf factor = expected replay / deadline, and the replay is (leaf_count + 1) / 2
    # steps, so a target factor fixes the step cost and with it honest generation time.
    needed_step = args.target_factor * args.deadline_seconds / ((spec.leaf_count + 1) / 2)
    lines.append(
        (
            f"per-leaf factor {args.target_factor:g} needs",
            f"{needed_step * 1e3:.1f} ms steps = {needed_step * spec.leaf_count:.0f} s per unit",
        )
    )
    partial = partial_storage_steps(spec.leaf_count, KEEP_FRACTIONS)
    for keep, steps in partial.items():
        lines.append(
            (
                f"kept {keep:.0%}, missing leaf",
                f"{steps:.1f} steps = {steps * result.step_seconds:.3f} s",
            )
        )
    if args.sweep:
        for scrypt_n, scrypt_r in SWEEP:
            seconds = measure_step(spec.leaf_size, scrypt_n, scrypt_r)
            lines.append((f"step N={scrypt_n} r={scrypt_r}", f"{seconds * 1e3:.3f} ms"))
    _print_lines(lines)


if __name__ == "__main__":
    main()
