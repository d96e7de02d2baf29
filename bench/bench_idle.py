"""How much harder it is to fake an idle unit than to store it.

Measures, on this machine and single-threaded:

- honest generation of one idle unit, all its layers (seconds, MB/s of stored unit);
- rebuilding one challenged last-layer leaf from nothing: every layer below in full (leaf
  0 of a layer continues from the last leaf of the one below) and the last layer up to
  the leaf, exactly what ``regenerate_leaf`` computes;
- the factor: that time over the challenge deadline, on average over the index, for the
  cheapest index, and along the critical path (a faker with unlimited cores), and the
  single-core factor for K challenged leaves of K distinct units;
- what a faker that kept a random share of the LAST layer pays per missing leaf;
- with ``--sweep``, the same for candidate (N, r, layers), and the cheapest honest
  generation that reaches ``--target-factor``.

Step counts come from the unit's look-back graph (which leaf needs which), and times from
the measured cost of one step: every step is one scrypt of the same size, so the two
multiply. ``--quick`` times a few hundred steps and takes the graph from a unit made
with the cheapest scrypt (its look-backs have the same distribution); the full run
generates the unit, takes its graph, and times real rebuilds to check the model.

    python bench/bench_idle.py [--quick] [--sweep] [--unit-size BYTES] [--leaf-size BYTES]
        [--scrypt-n N] [--scrypt-r R] [--layers L] [--deadline-seconds S] [--samples K]
        [--cert-samples S] [--regen-trials T] [--target-factor F]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from chain_client.idle import (
    IdleSpec,
    IdleUnit,
    generate_unit,
    idle_seed,
    lookback_index,
    regenerate_leaf,
)
from chain_client.idle_proofs import (
    LeafOpening,
    cert_challenges,
    prove_certification,
    verify_certification,
)

__all__ = [
    "GraphCosts",
    "graph_costs",
    "lookback_graph",
    "main",
    "measure_step",
    "partial_storage_steps",
]

MIB = 1024 * 1024
# Recommended (see --sweep and chain_client.idle): the cheapest honest generation whose
# per-leaf factor stays above 10 at 12 s, with a fifth to spare for the host's speed
# drift, on the 2-vCPU EPYC build box.
DEFAULT_SCRYPT_N = 2048
DEFAULT_SCRYPT_R = 6
DEFAULT_LAYERS = 7
# Idle proofs are plain reads: two blocks of 6 s is ample for an honest miner.
DEFAULT_DEADLINE_SECONDS = 12.0
DEFAULT_SAMPLES = 16
DEFAULT_CERT_SAMPLES = 32
QUICK_SAMPLE_STEPS = 256
SWEEP_SCRYPT = (
    (1024, 4),
    (1024, 8),
    (2048, 4),
    (2048, 5),
    (2048, 6),
    (2048, 8),
    (4096, 4),
    (4096, 8),
    (8192, 4),
)
SWEEP_ROUNDS = 3
SWEEP_LAYERS = (4, 5, 6, 7, 8)
KEEP_FRACTIONS = (0.9, 0.5, 0.25, 0.1, 0.0)
WRONG_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5)
_BENCH_SEED = idle_seed(bytes(32), 0, hashlib.sha256(b"deoss/bench-idle").digest())
_BENCH_BEACON = hashlib.sha256(b"deoss/bench-beacon").digest()


def lookback_graph(spec: IdleSpec, unit: IdleUnit) -> list[list[int]]:
    """``graph[l][i]`` is ``j(l, i)``: the leaf below (or, in layer 0, before) it needs."""
    size, count = spec.leaf_size, spec.leaf_count
    graph = []
    for layer, data in enumerate(unit.layers):
        view = memoryview(data)
        row = [0] * count  # leaf 0 of layer 0 has no look-back; 0 is never read for it
        for index in range(count):
            if layer or index:
                prev = view[(index - 1) * size : index * size] if index else None
                row[index] = lookback_index(spec, unit.seed, layer, index, prev)
        graph.append(row)
    return graph


def cheap_graph(leaf_count: int, layers: int) -> list[list[int]]:
    """A look-back graph with the real distribution, from the cheapest possible unit."""
    spec = IdleSpec(unit_size=64 * leaf_count, leaf_size=64, scrypt_n=2, scrypt_r=1, layers=layers)
    return lookback_graph(spec, generate_unit(spec, _BENCH_SEED))


def _below_steps(graph: Sequence[Sequence[int]], reach: int) -> int:
    """Steps for the layers below the last when the last needs layer L-2 up to ``reach``.

    That is a prefix of layer L-2 (a layer is a chain) and every layer under it in full:
    leaf 0 of layer L-2 continues from the last leaf of layer L-3, and so on down.
    """
    return reach + 1 + (len(graph) - 2) * len(graph[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphCosts:
    """Steps to rebuild a last-layer leaf from nothing, over all indices."""

    honest_steps: int
    mean_steps: float
    min_steps: int
    # With unlimited cores: the longest dependency chain, in steps.
    mean_critical_path: float
    min_critical_path: int


def _rebuild_steps(graph: Sequence[Sequence[int]]) -> list[int]:
    # Leaf i of the last layer needs leaf 0 of it, which needs the last leaf of the layer
    # below, and so on: every layer below in full, whatever the look-backs drew.
    count = len(graph[0])
    below = (len(graph) - 1) * count
    return [below + index + 1 for index in range(count)]


def _critical_paths(graph: Sequence[Sequence[int]]) -> list[int]:
    count = len(graph[0])
    finish = list(range(1, count + 1))  # layer 0 is one chain
    for row in graph[1:]:
        # Leaf 0 waits for the last leaf of the layer below, its prev.
        done, after = [], finish[-1]
        for index in range(count):
            after = max(after, finish[row[index]]) + 1
            done.append(after)
        finish = done
    return finish


def graph_costs(graph: Sequence[Sequence[int]]) -> GraphCosts:
    steps, paths = _rebuild_steps(graph), _critical_paths(graph)
    return GraphCosts(
        honest_steps=len(graph) * len(graph[0]),
        mean_steps=statistics.fmean(steps),
        min_steps=min(steps),
        mean_critical_path=statistics.fmean(paths),
        min_critical_path=min(paths),
    )


def _single_layer_missing(
    row: Sequence[int], kept: Sequence[bool], rng: random.Random, trials: int
) -> float:
    # One layer: a missing leaf needs its prev and its look-back, both in the same layer.
    missing = [index for index, keep in enumerate(kept) if not keep]
    costs = []
    for _ in range(min(trials, len(missing))):
        needed: set[int] = set()
        pending = [rng.choice(missing)]
        while pending:
            leaf = pending.pop()
            if kept[leaf] or leaf in needed:
                continue
            needed.add(leaf)
            if leaf:
                pending += (leaf - 1, row[leaf])
        costs.append(len(needed))
    return statistics.fmean(costs) if costs else 0.0


def partial_storage_steps(
    graph: Sequence[Sequence[int]],
    keep_fractions: Sequence[float],
    *,
    seed: int = 0,
    trials: int = 300,
) -> dict[float, float]:
    """Mean steps to rebuild a missing last-layer leaf when a random share of the last
    layer was kept (and nothing below it)."""
    rng = random.Random(seed)
    count = len(graph[0])
    results = {}
    for keep in keep_fractions:
        kept = [rng.random() < keep for _ in range(count)]
        if len(graph) == 1:
            results[keep] = _single_layer_missing(graph[0], kept, rng, trials)
            continue
        # Exact, over every missing leaf: it needs the run of missing leaves before it in
        # the last layer, and layer L-2 up to the furthest look-back of that run, or all
        # of it where the run starts at leaf 0, whose prev is the last leaf of layer L-2.
        costs, run, reach = [], 0, count - 1
        for index in range(count):
            if kept[index]:
                run, reach = 0, 0
                continue
            run, reach = run + 1, max(reach, graph[-1][index])
            costs.append(run + _below_steps(graph, reach))
        results[keep] = statistics.fmean(costs) if costs else 0.0
    return results


def measure_step(leaf_size: int, scrypt_n: int, scrypt_r: int, *, steps: int) -> float:
    """Seconds per leaf step for these scrypt parameters, over two layers."""
    per_layer = max(steps // 2, 1)
    spec = IdleSpec(
        unit_size=leaf_size * per_layer,
        leaf_size=leaf_size,
        scrypt_n=scrypt_n,
        scrypt_r=scrypt_r,
        layers=2,
    )
    started = time.perf_counter()
    generate_unit(spec, _BENCH_SEED)
    return (time.perf_counter() - started) / (2 * per_layer)


def _opening_json_bytes(leaf_size: int, depth: int) -> int:
    opening = LeafOpening(0, bytes(leaf_size), (bytes(32),) * depth)
    return len(json.dumps(opening.to_json()))


def cert_proof_bytes(spec: IdleSpec, samples: int) -> int:
    """JSON size of a unit's certification proofs: three openings per sample."""
    depth = (spec.leaf_count - 1).bit_length()
    return samples * (3 * _opening_json_bytes(spec.leaf_size, depth) + 64)


def _time_certification(spec: IdleSpec, unit: IdleUnit, samples: int) -> float:
    challenges = cert_challenges(
        _BENCH_BEACON, unit.layer_roots, bytes(32), 0, samples, spec.leaf_count
    )
    proofs = prove_certification(spec, unit, challenges)
    started = time.perf_counter()
    if not verify_certification(spec, unit.seed, unit.layer_roots, proofs, challenges):
        raise AssertionError("an honest unit failed certification")
    return time.perf_counter() - started


@dataclass(frozen=True, slots=True, kw_only=True)
class _Measured:
    step_seconds: float
    how: str
    graph: list[list[int]]
    # (index, measured seconds, modelled steps) for real rebuilds; empty with --quick.
    rebuilds: list[tuple[int, float, int]]
    verify_seconds: float | None


def _measure(spec: IdleSpec, args: argparse.Namespace) -> _Measured:
    if args.quick:
        step = measure_step(spec.leaf_size, spec.scrypt_n, spec.scrypt_r, steps=QUICK_SAMPLE_STEPS)
        graph = cheap_graph(spec.leaf_count, spec.layers)
        return _Measured(
            step_seconds=step,
            how=f"extrapolated from {QUICK_SAMPLE_STEPS} steps",
            graph=graph,
            rebuilds=[],
            verify_seconds=None,
        )
    started = time.perf_counter()
    unit = generate_unit(spec, _BENCH_SEED)
    generation = time.perf_counter() - started
    graph = lookback_graph(spec, unit)
    verify_seconds = _time_certification(spec, unit, args.cert_samples)
    del unit  # the rebuilds below need the memory
    steps = _rebuild_steps(graph)
    rng = random.Random(1)
    indices = [0] + [rng.randrange(spec.leaf_count) for _ in range(args.regen_trials - 1)]
    rebuilds = []
    for index in indices[: args.regen_trials]:
        started = time.perf_counter()
        regenerate_leaf(spec, _BENCH_SEED, index)
        rebuilds.append((index, time.perf_counter() - started, steps[index]))
    return _Measured(
        step_seconds=generation / (spec.layers * spec.leaf_count),
        how="measured",
        graph=graph,
        rebuilds=rebuilds,
        verify_seconds=verify_seconds,
    )


def _print_lines(lines: Sequence[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}: {value}")


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def _report(spec: IdleSpec, args: argparse.Namespace, measured: _Measured) -> None:
    step, deadline = measured.step_seconds, args.deadline_seconds
    costs = graph_costs(measured.graph)
    generation = costs.honest_steps * step
    regen = costs.mean_steps * step
    per_layer_last = math.ceil(args.cert_samples / spec.layers)
    lines = [
        ("unit", f"{spec.unit_size} B = {spec.leaf_count} leaves of {spec.leaf_size} B"),
        ("layers", f"{spec.layers} ({spec.layers * spec.unit_size / MIB:.0f} MiB while made)"),
        (
            "scrypt",
            f"N={spec.scrypt_n} r={spec.scrypt_r} ({128 * spec.scrypt_n * spec.scrypt_r} B)",
        ),
        ("leaf step", f"{step * 1e3:.3f} ms ({measured.how})"),
        ("generation", f"{generation:.1f} s = {costs.honest_steps} steps"),
        ("generation throughput", f"{spec.unit_size / generation / 1e6:.3f} MB/s per core"),
        (
            "rebuild one leaf",
            f"{regen:.1f} s = {costs.mean_steps:.0f} steps on average "
            f"({costs.mean_steps / costs.honest_steps:.1%} of generation)",
        ),
        ("rebuild cheapest leaf", f"{costs.min_steps * step:.1f} s = {costs.min_steps} steps"),
        (
            "critical path (any cores)",
            f"{costs.mean_critical_path * step:.1f} s average, "
            f"{costs.min_critical_path * step:.1f} s cheapest leaf",
        ),
        ("deadline", f"{deadline:g} s"),
        ("per-leaf factor", f"{regen / deadline:.2f} (one core, average index)"),
        ("per-leaf factor, cheapest", f"{costs.min_steps * step / deadline:.2f}"),
        (
            "per-leaf factor, any cores",
            f"{costs.mean_critical_path * step / deadline:.2f} average, "
            f"{costs.min_critical_path * step / deadline:.2f} cheapest",
        ),
        (f"factor, {args.samples} units", f"{args.samples * regen / deadline:.1f} (one core)"),
    ]
    needed_step = args.target_factor * deadline / costs.mean_steps
    lines.append(
        (
            f"per-leaf factor {args.target_factor:g} needs",
            f"{needed_step * 1e3:.2f} ms steps = {needed_step * costs.honest_steps:.0f} s "
            f"per unit = {spec.unit_size / (needed_step * costs.honest_steps) / 1e6:.3f} MB/s",
        )
    )
    for index, seconds, steps in measured.rebuilds:
        lines.append(
            (
                f"measured rebuild of leaf {index}",
                f"{seconds:.1f} s for {steps} steps ({seconds / steps * 1e3:.3f} ms/step)",
            )
        )
    lines.append(
        (
            f"certification, {args.cert_samples} samples",
            f"{cert_proof_bytes(spec, args.cert_samples) / 1e6:.2f} MB of JSON proofs, "
            f"{per_layer_last} on the last layer",
        )
    )
    if measured.verify_seconds is not None:
        lines.append(("certification check", f"{measured.verify_seconds:.3f} s (measured)"))
    else:
        lines.append(("certification check", f"~{args.cert_samples * step:.3f} s (one step each)"))
    passes = ", ".join(
        f"d={wrong:.0%}: {(1 - wrong) ** args.cert_samples:.2g} / "
        f"{(1 - wrong) ** per_layer_last:.2g}"
        for wrong in WRONG_FRACTIONS
    )
    lines.append(("wrong share passes (all / last)", passes))
    _print_lines(lines)

    print(
        f"\nkept a random share of the last layer only; cost of one missing leaf ({deadline:g} s)"
    )
    layered = partial_storage_steps(measured.graph, KEEP_FRACTIONS)
    single = partial_storage_steps(measured.graph[:1], KEEP_FRACTIONS)
    rows = []
    for keep in KEEP_FRACTIONS:
        rows.append(
            [
                f"{keep:.0%}",
                f"{layered[keep]:.0f}",
                f"{layered[keep] * step:.1f}",
                f"{layered[keep] * step / deadline:.2f}",
                f"{single[keep]:.0f}",
                f"{single[keep] * step:.2f}",
            ]
        )
    header = ["kept", "steps", "seconds", "factor", "1-layer steps", "1-layer seconds"]
    _print_table(header, rows)


def _sweep(spec: IdleSpec, args: argparse.Namespace) -> None:
    deadline, target = args.deadline_seconds, args.target_factor
    deepest = cheap_graph(spec.leaf_count, max(SWEEP_LAYERS))
    # Layer l does not depend on how many layers follow it: one deep graph serves all.
    costs = {layers: graph_costs(deepest[:layers]) for layers in SWEEP_LAYERS}
    # Rounds over all candidates, fastest of each kept: the host's speed drifts by a fifth
    # over minutes, and the fastest is what a faker's core manages.
    step_of = dict.fromkeys(SWEEP_SCRYPT, math.inf)
    for _ in range(SWEEP_ROUNDS):
        for scrypt_n, scrypt_r in SWEEP_SCRYPT:
            steps = max(16, int(0.3 / (scrypt_n * scrypt_r * 3e-7)))
            seconds = measure_step(spec.leaf_size, scrypt_n, scrypt_r, steps=steps)
            step_of[scrypt_n, scrypt_r] = min(step_of[scrypt_n, scrypt_r], seconds)
    rows, best_mean, best_safe = [], None, None
    for (scrypt_n, scrypt_r), step in step_of.items():
        for layers in SWEEP_LAYERS:
            cost = costs[layers]
            generation = cost.honest_steps * step
            mean = cost.mean_steps * step / deadline
            safe = min(cost.min_steps, cost.min_critical_path) * step / deadline
            key = (generation, scrypt_n, scrypt_r, layers)
            if mean >= target and (best_mean is None or key < best_mean):
                best_mean = key
            if safe >= target and (best_safe is None or key < best_safe):
                best_safe = key
            rows.append(
                [
                    str(scrypt_n),
                    str(scrypt_r),
                    str(layers),
                    f"{step * 1e3:.2f}",
                    f"{generation:.0f}",
                    f"{spec.unit_size / generation / 1e6:.3f}",
                    f"{mean:.1f}",
                    f"{cost.mean_critical_path * step / deadline:.1f}",
                    f"{safe:.1f}",
                ]
            )
    print(f"\nsweep: {spec.unit_size // MIB} MiB units, {spec.leaf_size} B leaves, {deadline:g} s")
    header = ["N", "r", "L", "step ms", "gen s", "MB/s", "factor", "any cores", "worst"]
    _print_table(header, rows)
    print("factor: one core, average index; any cores: critical path, average index;")
    print("worst: the cheaper of the cheapest leaf on one core and its critical path")
    for name, best in (("average", best_mean), ("worst", best_safe)):
        if best is None:
            print(f"no candidate reaches a {name} factor of {target:g}")
        else:
            generation, scrypt_n, scrypt_r, layers = best
            print(
                f"cheapest with {name} factor >= {target:g}: N={scrypt_n} r={scrypt_r} "
                f"L={layers}, {generation:.0f} s per unit"
            )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--unit-size", type=int, default=64 * MIB)
    parser.add_argument("--leaf-size", type=int, default=8192)
    parser.add_argument("--scrypt-n", type=int, default=DEFAULT_SCRYPT_N)
    parser.add_argument("--scrypt-r", type=int, default=DEFAULT_SCRYPT_R)
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS)
    parser.add_argument("--deadline-seconds", type=float, default=DEFAULT_DEADLINE_SECONDS)
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--cert-samples", type=int, default=DEFAULT_CERT_SAMPLES)
    parser.add_argument("--regen-trials", type=int, default=2)
    parser.add_argument("--target-factor", type=float, default=10.0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"time {QUICK_SAMPLE_STEPS} steps and extrapolate to the unit",
    )
    parser.add_argument(
        "--sweep", action="store_true", help="also try candidate scrypt N, r and layer counts"
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
            layers=args.layers,
        )
    except ValueError as exc:
        raise SystemExit(f"bench_idle: {exc}") from None
    if args.regen_trials < 0 or args.cert_samples < 0 or args.samples < 1:
        raise SystemExit("bench_idle: --regen-trials, --cert-samples and --samples too small")
    _report(spec, args, _measure(spec, args))
    if args.sweep:
        _sweep(spec, args)


if __name__ == "__main__":
    main()
