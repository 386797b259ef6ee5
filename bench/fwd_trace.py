"""Splits a tile of the warp-specialised forward into its phases, from the clock64 trace a
SLA_FWD_TRACE build appends to $SLA_FWD_TRACE_OUT (src/sla/kernels/fwd_trace.cuh): per launch
shape, the median over every traced tile but each CTA's first (the ring's fill), in ns, for the
consumer warpgroups and the producer. Usage: python3 bench/fwd_trace.py TRACE_FILE"""
import argparse
import statistics
import struct
from array import array

CTAS, TILES, ROLES, POINTS = 144, 32, 3, 15  # fwd_trace.cuh
HEADER = ("grid", "tiles", "steps", "entries", "qblocks", "n", "d", "cta_words")


def records(path):
    """(header dict, words as array('q')) per launch, in file order."""
    data = open(path, "rb").read()
    at = 0
    while at < len(data):
        header = dict(zip(HEADER, struct.unpack_from("<8q", data, at)))
        at += 64
        count = CTAS * header["cta_words"]
        words = array("q", data[at:at + 8 * count])
        at += 8 * count
        yield header, words


def point(words, cta_words, cta, tile, role, index):
    return words[cta * cta_words + (tile * ROLES + role) * POINTS + index]


def phases(header, words):
    """{phase: [ns per traced tile]} for the consumers and the producer, and the launch's span in ns."""
    grid, steps, linear = header["grid"], header["steps"], header["entries"] > header["steps"]
    cw = header["cta_words"]
    consumer = {name: [] for name in ("wait Q", "wait step 0's stage", "step 0", "step 1", "wait step 2's stage",
                                      "step 2", "a later step", "last P V", "normalise", "wait M", "phi(Q)",
                                      "phi(Q) M panel 0", "phi(Q) M panel 1", "store", "tile", "between tiles",
                                      "outside the steps")}
    producer = {name: [] for name in ("wait Q's slot", "wait step 0's slot", "issue the steps", "issue M",
                                      "tile")}
    starts, ends = [], []
    for cta in range(min(grid, CTAS)):
        clocks = words[cta * cw + TILES * ROLES * POINTS:cta * cw + TILES * ROLES * POINTS + 4]
        if clocks[3] <= clocks[1]:
            continue
        per_ns = (clocks[2] - clocks[0]) / (clocks[3] - clocks[1])  # cycles per ns
        starts.append(clocks[1])
        ends.append(clocks[3])
        own = min(TILES, (header["tiles"] - cta + grid - 1) // grid)
        for tile in range(1, own):
            for role in (1, 2):
                t = [point(words, cw, cta, tile, role, k) / per_ns for k in range(POINTS)]
                consumer["wait Q"].append(t[1] - t[0])
                consumer["wait step 0's stage"].append(t[2] - t[1])
                consumer["step 0"].append(t[3] - t[2])
                if steps > 1:
                    consumer["step 1"].append(t[4] - t[3])
                if steps > 2:
                    consumer["wait step 2's stage"].append(t[5] - t[4])
                    consumer["step 2"].append(t[6] - t[5])
                if steps > 3:
                    consumer["a later step"].append((t[7] - t[6]) / (steps - 3))
                consumer["last P V"].append(t[8] - t[7])
                consumer["normalise"].append(t[9] - t[8])
                if linear:
                    consumer["wait M"].append(t[10] - t[9])
                    consumer["phi(Q)"].append(t[11] - t[10])
                    consumer["phi(Q) M panel 0"].append(t[12] - t[11])
                    if header["d"] > 64:
                        consumer["phi(Q) M panel 1"].append(t[13] - t[12])
                    consumer["store"].append(t[14] - t[13 if header["d"] > 64 else 12])
                else:
                    consumer["store"].append(t[14] - t[9])
                consumer["tile"].append(t[14] - t[0])
                if tile + 1 < own:
                    consumer["between tiles"].append(point(words, cw, cta, tile + 1, role, 0) / per_ns - t[14])
            t = [point(words, cw, cta, tile, 0, k) / per_ns for k in range(5)]
            producer["wait Q's slot"].append(t[1] - t[0])
            producer["wait step 0's slot"].append(t[2] - t[1])
            producer["issue the steps"].append(t[3] - t[2])
            if linear:
                producer["issue M"].append(t[4] - t[3])
            if tile + 1 < own:
                producer["tile"].append(point(words, cw, cta, tile + 1, 0, 0) / per_ns - t[0])
    later = statistics.median(consumer["a later step"]) if consumer["a later step"] else None
    if later is not None:  # what a tile costs beyond its steps at the later steps' rate
        consumer["outside the steps"] = [tile - steps * later for tile in consumer["tile"]]
    span = (max(ends) - min(starts)) if starts else 0
    return consumer, producer, span


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("trace")
    args = parser.parse_args()
    last = {}  # the last launch of each shape (the warm one)
    for header, words in records(args.trace):
        last[(header["tiles"], header["steps"], header["qblocks"], header["entries"])] = (header, words)
    for header, words in last.values():
        consumer, producer, span = phases(header, words)
        print(f"## {header['tiles']} tiles of {header['qblocks']} query block(s) on {header['grid']} CTAs, "
              f"{header['steps']} steps ({header['n']} blocks per LUT row), D {header['d']}, "
              f"{'linear M in the ring' if header['entries'] > header['steps'] else 'no linear branch'}; "
              f"kernel span {span / 1000:.1f} us")
        print("| role | phase | median ns | mean ns | tiles |\n|---|---|---|---|---|")
        for role, table in (("consumer", consumer), ("producer", producer)):
            for name, values in table.items():
                if values:
                    print(f"| {role} | {name} | {statistics.median(values):.0f} | {statistics.fmean(values):.0f} "
                          f"| {len(values)} |")
        print()


if __name__ == "__main__":
    main()
