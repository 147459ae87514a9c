"""The learning rate's optimum at several widths, and the rule that carries it from one width to another.

    python benchmarks/lr_rule.py --widths 64 128 --lrs 1.5e-3 3e-3 6e-3 1.2e-2 --seeds 1337 7
    python benchmarks/lr_rule.py --widths 256 --lrs 1.5e-3 3e-3 6e-3 --seeds 1337 7 --fit 64 128 --check 256

Every run is benchmarks/ablate.py's small scale (4 layers, heads of 32 dimensions, an MLP 4 times the width, seq 256,
the same 600 updates of 16 blocks; RESULTS 2.2 measured it at vocabulary 2,048) at one width, learning rate and seed,
trained by the notebook's own train() and scored in bits per byte of held-out story text (NELBO). Per width, the
optimum is the vertex of a parabola in log2(learning rate) through the best mean and its two neighbours. The rule is
the power law lr* = c · width^(-a) fitted to the optima of the --fit widths; its prediction for --check is printed
beside that width's measured optimum. Results accumulate in --results (JSON lines), so that widths can be run one
at a time.
"""

import argparse
import json
import math
import statistics
import tempfile
from pathlib import Path

import torch
from ablate import train_and_score
from common import DEFAULT_DATA, SHARED, device_name, print_row, print_table


def shape_at(width):
    return {"d_model": width, "n_heads": max(2, width // 32), "d_ff": 4 * width}


def optimum(means):
    """The vertex, in learning rate, of the parabola in log2(lr) through the best mean and its neighbours (the best
    measured lr itself when it lies at the grid's edge)."""
    lrs = sorted(means)
    best = min(range(len(lrs)), key=lambda i: means[lrs[i]])
    if best in (0, len(lrs) - 1):
        return lrs[best], True
    x = [math.log2(lr) for lr in lrs[best - 1 : best + 2]]
    y = [means[lr] for lr in lrs[best - 1 : best + 2]]
    a = ((y[2] - y[1]) / (x[2] - x[1]) - (y[1] - y[0]) / (x[1] - x[0])) / (x[2] - x[0])
    b = (y[1] - y[0]) / (x[1] - x[0]) - a * (x[0] + x[1])
    return 2 ** (-b / (2 * a)), False


def power_law(optima):
    """(c, a) of lr* = c · width^(-a), least squares in log-log."""
    xs, ys = [math.log(w) for w in optima], [math.log(lr) for lr in optima.values()]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return math.exp(my - slope * mx), -slope


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="*", default=[])
    parser.add_argument("--lrs", type=float, nargs="*", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 7])
    parser.add_argument("--variants", nargs="*", default=[], help="benchmarks/recipes.py variants under every run")
    parser.add_argument("--fit", type=int, nargs="*", help="the widths the rule is fitted to (default: all)")
    parser.add_argument("--check", type=int, help="the width whose measured optimum checks the rule")
    parser.add_argument("--results", type=Path, default=Path("checkpoints/benchmarks/lr_rule.jsonl"))
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    if not args.data:
        parser.error(f"no data: pass --data (no {SHARED} here)")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.results.parent.mkdir(parents=True, exist_ok=True)
    print(f"{device_name(torch)}; variants: {args.variants or 'the notebook'}", flush=True)
    with tempfile.TemporaryDirectory() as work:
        for width in args.widths:
            for lr in args.lrs:
                for seed in args.seeds:
                    values = {**shape_at(width), "lr": lr, "seed": seed}
                    r = train_and_score(["defaults", *args.variants], "small", args.data, Path(work), device,
                                        values=values, score_stories=False)
                    record = {"variants": args.variants, "width": width, "lr": lr, "seed": seed, "bpb": r["bpb"],
                              "nelbo": r["nelbo"], "parameters": r["parameters"]}
                    with args.results.open("a") as results:
                        results.write(json.dumps(record) + "\n")
                    print_row((width, f"{lr:g}", seed, f"{r['bpb']:.4f}"))

    runs = [json.loads(line) for line in args.results.read_text().splitlines()]
    runs = [r for r in runs if r["variants"] == args.variants]
    grid = {}
    for r in runs:
        grid.setdefault(r["width"], {}).setdefault(r["lr"], []).append(r["bpb"])
    rows, optima = [], {}
    for width in sorted(grid):
        means = {lr: statistics.mean(values) for lr, values in grid[width].items()}
        optima[width], at_edge = optimum(means)
        for lr in sorted(means):
            values = grid[width][lr]
            rows.append((width, f"{lr:g}", len(values), f"{means[lr]:.4f} ± {(max(values) - min(values)) / 2:.4f}",
                         f"{optima[width]:.2e}" + (" (at the grid's edge)" if at_edge else "")))
    print_table(("width", "learning rate", "seeds", "NELBO bits/byte (mean ± half-range)", "optimum"), rows)
    fitted = {w: optima[w] for w in (args.fit or optima) if w in optima}
    if len(fitted) >= 2:
        c, a = power_law(fitted)
        print(f"\nlr* = {c:.3g} · width^(-{a:.2f}), fitted to widths {sorted(fitted)}")
        if args.check in optima:
            predicted = c * args.check ** -a
            print(f"width {args.check}: predicted {predicted:.2e}, measured {optima[args.check]:.2e} "
                  f"(ratio {max(predicted, optima[args.check]) / min(predicted, optima[args.check]):.2f})")


if __name__ == "__main__":
    main()
