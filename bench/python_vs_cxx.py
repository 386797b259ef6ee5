"""Issue 13's comparison settled over several runs: the medians of the ratios (dense time / SLA
time) that sla-bench (C++) and python_api_bench.py (eager and compiled) wrote in markdown, per
cell, and how far each Python cell lies from the C++ one; then the same for the SLA times and for
the two processes' dense baselines, which tell a difference of SLA's work from one of the
baseline's. Run by bench/python_vs_cxx.sh.

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


def leading_ms(cell):
    """'1.506 (7.64x)' -> 1.506."""
    return float(cell.split()[0])


def print_table(values, paths, title, unit=""):
    """One markdown table: per row and path the median over runs of each column (the runs in
    brackets) and its distance from the C++ path's median."""
    print(title)
    print("| row | path | " + " | ".join(f"{c} (runs) | vs C++" for c in COLUMNS) + " |")
    print("|---|---|" + "---|---|" * len(COLUMNS))
    for name in ROWS:
        for path in paths:
            cells = []
            for col in COLUMNS:
                runs = values.get((name, path, col), [])
                ref = values.get((name, paths[0], col), [])
                if not runs or not ref:
                    cells += ["-", "-"]
                    continue
                med, ref_med = statistics.median(runs), statistics.median(ref)
                digits = 2 if unit == "x" else 3
                cells.append(f"{med:.{digits}f}{unit} ({', '.join(f'{r:.{digits}f}' for r in runs)})")
                cells.append("" if path == paths[0] else f"{100 * (med / ref_med - 1):+.1f} %")
            print(f"| {name} | {path} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cxx", nargs="+", required=True, help="sla-bench --markdown files")
    parser.add_argument("--python", nargs="+", required=True, help="python_api_bench.py --markdown files")
    args = parser.parse_args()
    # ratios[(row, path, column)] = [ratio per run]; times: the same keys, milliseconds, with the
    # dense baselines of each side as paths "C++ dense" and "Python dense".
    ratios, times = {}, {}
    for path in args.cxx:
        for cells in table_rows(path):
            for name, key in ROWS.items():
                if tuple(cells[:3]) == key and cells[3] == "all":
                    for i, col in enumerate(COLUMNS):
                        ratios.setdefault((name, "C++", col), []).append(ratio(cells[10 + i]))
                        times.setdefault((name, "C++ dense", col), []).append(float(cells[4 + i]))
                        times.setdefault((name, "C++", col), []).append(float(cells[7 + i]))
    for path in args.python:
        for cells in table_rows(path):
            for name, key in ROWS.items():
                if tuple(cells[:3]) == key and len(cells) == 10:
                    dense_ms = [float(t) for t in cells[3].split("/")]
                    for i, col in enumerate(COLUMNS):
                        ratios.setdefault((name, "eager", col), []).append(ratio(cells[4 + i]))
                        ratios.setdefault((name, "compiled", col), []).append(ratio(cells[7 + i]))
                        times.setdefault((name, "Python dense", col), []).append(dense_ms[i])
                        times.setdefault((name, "eager", col), []).append(leading_ms(cells[4 + i]))
                        times.setdefault((name, "compiled", col), []).append(leading_ms(cells[7 + i]))
    print_table(ratios, ("C++", "eager", "compiled"), "Ratios (dense time / SLA time, each in its own process):\n", "x")
    print_table(times, ("C++", "eager", "compiled"), "\nSLA milliseconds:\n")
    print_table(times, ("C++ dense", "Python dense"), "\nDense (cuDNN) milliseconds:\n")


if __name__ == "__main__":
    main()
