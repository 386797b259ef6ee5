"""Issue 13's comparison settled over several runs: the medians of the ratios (dense time / SLA
time) that sla-bench (C++) and python_api_bench.py (eager and compiled) wrote in markdown, per
cell, and how far each Python cell lies from the C++ one. Run by bench/python_vs_cxx.sh.

Usage: python3 bench/python_vs_cxx.py --cxx cxx_*.md --python python_*.md
"""
import argparse
import re
import statistics

ROWS = {"Wan": ("1,12,32760,128", "0.05", "128/64"), "Flux": ("1,24,4608,128", "0.20", "128/64")}
COLUMNS = ("fwd", "train fwd", "bwd")


def table_rows(path):
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) > 3 and re.fullmatch(r"\d+,\d+,\d+,\d+", cells[0]):
                yield cells


def ratio(cell):
    """'8.40x' or '1.506 (7.64x)' -> 8.40 / 7.64."""
    return float(re.search(r"([\d.]+)x", cell).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cxx", nargs="+", required=True, help="sla-bench --markdown files")
    parser.add_argument("--python", nargs="+", required=True, help="python_api_bench.py --markdown files")
    args = parser.parse_args()
    # values[(row, path, column)] = [ratio per run]
    values = {}
    for path in args.cxx:
        for cells in table_rows(path):
            for name, key in ROWS.items():
                if tuple(cells[:3]) == key and cells[3] == "all":
                    for i, col in enumerate(COLUMNS):
                        values.setdefault((name, "C++", col), []).append(ratio(cells[10 + i]))
    for path in args.python:
        for cells in table_rows(path):
            for name, key in ROWS.items():
                if tuple(cells[:3]) == key and len(cells) == 10:
                    for i, col in enumerate(COLUMNS):
                        values.setdefault((name, "eager", col), []).append(ratio(cells[4 + i]))
                        values.setdefault((name, "compiled", col), []).append(ratio(cells[7 + i]))
    print("| row | path | " + " | ".join(f"{c} (runs) | vs C++" for c in COLUMNS) + " |")
    print("|---|---|" + "---|---|" * len(COLUMNS))
    for name in ROWS:
        for path in ("C++", "eager", "compiled"):
            cells = []
            for col in COLUMNS:
                runs = values.get((name, path, col), [])
                ref = values.get((name, "C++", col), [])
                if not runs or not ref:
                    cells += ["-", "-"]
                    continue
                med, ref_med = statistics.median(runs), statistics.median(ref)
                cells.append(f"{med:.2f}x ({', '.join(f'{r:.2f}' for r in runs)})")
                cells.append("" if path == "C++" else f"{100 * (med / ref_med - 1):+.1f} %")
            print(f"| {name} | {path} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
