"""The accuracy–sparsity frontier of a sweep (``frontier.png``).

Two panels: test accuracy against the fraction of zero coefficients, and
against the FLOPs per image of the pruned net (as minids computes it, the
fixed layers through their factors). One line per model/dictionary, one
point per ζ (labelled); with several seeds the point is their mean and the
error bars one standard deviation of each axis.
"""

from collections import defaultdict

import numpy as np

from minids.analysis.figures import _pyplot, _save


def frontier_points(rows):
    """{series: [(zeta, mean acc, std acc, mean sparsity, std sparsity, mean MFLOPs, std MFLOPs)]}."""
    groups = defaultdict(list)
    for row in rows:
        series = f"{row['model']} ({row['dictionary']})" if row["dictionary"] else row["model"]
        groups[(series, row["zeta"])].append(row)
    lines = defaultdict(list)
    for (series, zeta), members in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1])):
        acc = np.array([100 * r["test_accuracy"] for r in members])
        spa = np.array([100 * r["sparsity"] for r in members])
        flops = np.array([r["flops_pruned_factored"] / 1e6 for r in members])
        lines[series].append((zeta, acc.mean(), acc.std(), spa.mean(), spa.std(), flops.mean(), flops.std()))
    return dict(lines)


def plot_frontier(rows, out):
    """Write the frontier figure of the sweep table ``rows`` to ``out``; returns ``out``."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for series, points in frontier_points(rows).items():
        zeta, acc, acc_sd, spa, spa_sd, flops, flops_sd = map(np.array, zip(*points))
        line = left.errorbar(spa, acc, xerr=spa_sd, yerr=acc_sd, marker="o", capsize=3, label=series)
        right.errorbar(flops, acc, xerr=flops_sd, yerr=acc_sd, marker="o", capsize=3,
                       color=line[0].get_color(), label=series)
        for x, y, z in zip(spa, acc, zeta):
            left.annotate(f"ζ={z:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    left.set_xlabel("zero coefficients (%)")
    right.set_xlabel("MFLOPs per image after pruning (factored)")
    for ax in (left, right):
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("accuracy against sparsity over ζ", fontsize=11)
    return _save(fig, out)
