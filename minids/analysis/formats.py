"""Reports side by side: a text table, CSV or JSON.

:func:`fields` flattens one report (:func:`minids.analysis.summary.analyze`)
into ordered ``(section, key, label, value)`` rows. The text table puts one
column per file and one row per field; CSV puts one row per file and one
column per ``key`` (fractions stay fractions in [0, 1]); JSON is the list of
nested reports. A field one file lacks (a layer the other model does not
learn) is blank in CSV, ``-`` in the table.
"""

import csv
import io
import json
from pathlib import Path

FORMATS = ("table", "csv", "json")

SECTIONS = {
    "summary": "Summary",
    "parameters": "Trainable parameters (Figure 4)",
    "sparsity": "Exact zeros per learned layer (Figures 6/7; * = coefficient layer)",
    "flops": "FLOPs per image, forward",
}


class Count(int):
    """A count out of a total: an int (CSV writes the count) shown as 'n / total'."""

    def __new__(cls, count, total):
        self = super().__new__(cls, count)
        self.total = total
        return self


def fields(report):
    """Ordered (section, key, label, value) rows of one report."""
    s = report["summary"]
    rows = [("summary", "model", "model", s["model"]),
            ("summary", "dataset", "data set", s["dataset"]),
            ("summary", "input_shape", "input (C, H, W)", "x".join(map(str, s["input_shape"]))),
            ("summary", "num_classes", "classes", s["num_classes"]),
            ("summary", "epoch", "epochs completed", s["epoch"]),
            ("summary", "epochs", "epochs asked for", s["epochs"]),
            ("summary", "test_accuracy", "test accuracy (Figure 6)", s["test_accuracy"]),
            ("summary", "dictionary", "dictionary", s["dictionary"]),
            ("summary", "zeta", "zeta (L1 shrink)", s["zeta"])]
    for layer in report["layers"]:
        rows.append(("parameters", f"params_{layer['name']}", layer["name"], layer["trainable"]))
    p = report["parameters"]
    rows += [("parameters", "params_total", "total", p["trainable"]),
             ("parameters", "params_fixed", "fixed (DCT) weights", p["fixed"]),
             ("parameters", "params_nin", "NiN total", p["nin_trainable"]),
             ("parameters", "params_ratio_nin", "ratio to NiN", p["ratio_to_nin"])]
    for layer in report["layers"]:
        if layer["fixed"]:
            continue
        name = layer["name"] + ("*" if layer["coefficient"] else "")
        key = layer["name"]
        rows += [("sparsity", f"zeros_{key}", f"{name} zero weights", layer["zero_fraction"]),
                 ("sparsity", f"zero_filters_{key}", f"{name} zero filters",
                  Count(layer["zero_filters"], layer["filters"])),
                 ("sparsity", f"zero_inputs_{key}", f"{name} unused inputs",
                  Count(layer["zero_inputs"], layer["inputs"]))]
    rows.append(("sparsity", "sparsity", "all * layers (NiN: all layers)",
                 report["sparsity"]["overall"]))
    if report["flops"] is not None:
        f = report["flops"]
        rows += [("flops", "flops", "as stored, fixed convs dense", f["dense"]),
                 ("flops", "flops_factored", "as stored, as computed (factored)", f["factored"]),
                 ("flops", "flops_pruned", "after pruning zeros, dense", f["pruned"]),
                 ("flops", "flops_pruned_factored", "after pruning zeros, factored",
                  f["pruned_factored"]),
                 ("flops", "flops_pruned_ratio", "pruned / stored", f["pruned_ratio"])]
    return rows


_PERCENT = {"test_accuracy", "sparsity"}


def _show(key, value):
    """A field's value as table text."""
    if value is None or value == "":
        return "-"
    if isinstance(value, Count):
        return f"{int(value):,} / {value.total:,}"
    if key in _PERCENT or key.startswith("zeros_"):
        return f"{100 * value:.2f}%"
    if key.startswith("flops") and isinstance(value, int):
        return f"{value / 1e6:,.2f} M"
    if isinstance(value, float):
        return f"{value:.3f}" if key.endswith("ratio") or key.endswith("ratio_nin") else f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _names(reports):
    """Column titles: file names, or full paths where two names clash."""
    names = [Path(r["file"]).name for r in reports]
    if len(set(names)) < len(names):
        return [r["file"] for r in reports]
    return names


def _union(reports):
    """(section, key, label) of every field of any report, in order.

    A field only a later report has goes right after the field that precedes
    it there (NiN's conv1 row lands before cccp1, as in the model).
    """
    merged, labels = [], {}
    for report in reports:
        position = 0
        for section, key, label, _ in fields(report):
            if key in labels:
                position = merged.index(key) + 1
            else:
                labels[key] = (section, key, label)
                merged.insert(position, key)
                position += 1
    return [labels[key] for key in merged]


def format_table(reports):
    """Plain-text table: one column per file, one row per field, grouped by section."""
    values = [{key: value for _, key, _, value in fields(r)} for r in reports]
    columns = _union(reports)
    names = _names(reports)
    label_width = max(len(label) for _, _, label in columns)
    cells = {key: [_show(key, v.get(key)) for v in values] for _, key, _ in columns}
    widths = [max(len(names[i]), *(len(cells[key][i]) for _, key, _ in columns))
              for i in range(len(reports))]
    lines, section = [], None
    header = " " * label_width + "".join(f"  {n:>{w}}" for n, w in zip(names, widths))
    for sec, key, label in columns:
        if sec != section:
            section = sec
            lines += (["", SECTIONS[sec]] if lines else [SECTIONS[sec]])
            lines.append(header)
        lines.append(f"{label:<{label_width}}" + "".join(f"  {c:>{w}}" for c, w in zip(cells[key], widths)))
    return "\n".join(lines) + "\n"


def format_csv(reports):
    """CSV text: a header row of field keys (``file`` first), then one row per file."""
    keys = ["file"] + [key for _, key, _ in _union(reports)]
    out = io.StringIO()
    writer = csv.DictWriter(out, keys, restval="", lineterminator="\n")
    writer.writeheader()
    for report in reports:
        row = {key: ("" if value is None else value) for _, key, _, value in fields(report)}
        writer.writerow({"file": report["file"], **row})
    return out.getvalue()


def format_json(reports):
    """JSON text: the list of nested reports."""
    return json.dumps(reports, indent=2) + "\n"


def format_reports(reports, fmt):
    """Text of ``reports`` in ``fmt`` ('table', 'csv' or 'json')."""
    return {"table": format_table, "csv": format_csv, "json": format_json}[fmt](reports)
