"""Analysis of minids weights files: the paper's tables and figures.

    from minids.analysis import load, analyze, format_table, write_figures
    w = load("weights/ds-nin-fashion-mnist.h5")
    report = analyze(w)                     # nested dict (JSON-ready)
    print(format_table([report]))           # Figures 4, 6, 7 and FLOPs
    write_figures(w, "plots")               # Figures 8, 9, 10 and a histogram

See docs/analysis.md.
"""

from minids.analysis.figures import (FIGURES, plot_atoms, plot_filters, plot_histogram,
                                     plot_history, write_figures)
from minids.analysis.filters import first_layer_atoms, first_layer_filters
from minids.analysis.formats import FORMATS, format_csv, format_json, format_reports, format_table
from minids.analysis.summary import analyze
from minids.analysis.weights import Weights, load

__all__ = ["FIGURES", "FORMATS", "Weights", "analyze", "first_layer_atoms", "first_layer_filters",
           "format_csv", "format_json", "format_reports", "format_table", "load", "plot_atoms",
           "plot_filters", "plot_histogram", "plot_history", "write_figures"]
