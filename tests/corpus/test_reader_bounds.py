"""The reader's cost is bounded by what the file holds (issue 11, part 3).

Each case builds a small hostile input here (no committed blobs) at a size that broke the old
reader (minutes of CPU, gigabytes of memory, SIGBUS, a blocked open, a forged line on the
terminal), runs `sla-ckpt inspect`, `verify` (and `convert` where it reads the same thing) on it,
and requires of every run:
- exit 1 or 2 with exactly one line on stderr naming the expected code (or a correct answer);
- under 2 s of wall time and under 512 MB of peak RSS, both measured here (os.wait4's rusage);
- no control character in text output except the line breaks the tool writes itself.
The oracle is the file's construction: we know what it holds, so we know what a correct answer is.
The truncated-while-read class is tested on the reader class itself (test_mapped_file.cpp).
"""
import json
import os
import re
import resource
import socket
import struct
import subprocess
import threading
import time

import pytest

from torch_zip import Assembler, Raw, Record, Seq, Storage, Tensor, build_zip, storages_in

BUILD = os.environ.get("SLA_BUILD_DIR", "build")
SLA_CKPT = os.environ.get("SLA_CKPT", os.path.join(BUILD, "tools", "sla_ckpt", "sla-ckpt"))
MAX_WALL_S = 2.0
MAX_RSS_MB = 512
KILL_AFTER_S = 30  # a run still going then has failed anyway; don't let a blocked open hang CI
AS_LIMIT_MB = 4096  # the old reader asked for tens of GB: fail fast instead of swapping the machine
SETTINGS = {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True}
FLOAT = ("torch", "FloatStorage")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # everything but the newline


# ---- running the tool under measurement ----------------------------------------------------------

class Run:
    def __init__(self, args, code, out, err, wall, rss_mb):
        self.args, self.code, self.out, self.err, self.wall, self.rss_mb = args, code, out, err, wall, rss_mb

    def __repr__(self):
        return (f"{' '.join(map(str, self.args[1:]))}: exit {self.code}, {self.wall:.2f} s, {self.rss_mb:.0f} MB, "
                f"stderr {self.err[-600:]!r}, stdout {self.out[-600:]!r}")


def limit_address_space():
    limit = AS_LIMIT_MB << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_tool(*args):
    """Runs sla-ckpt; wall time and peak RSS come from wait4 on this very child (its ru_maxrss also
    counts the forked Python's pages before exec, so it is an upper bound on the tool's)."""
    cmd = [SLA_CKPT, *map(str, args)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=limit_address_space)
    chunks = {"out": b"", "err": b""}

    def drain(name, stream):
        chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=("out", proc.stdout)),
               threading.Thread(target=drain, args=("err", proc.stderr))]
    for r in readers:
        r.start()
    killer = threading.Timer(KILL_AFTER_S, proc.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    for r in readers:
        r.join()
    return Run(cmd, proc.returncode, chunks["out"].decode(errors="replace"), chunks["err"].decode(errors="replace"),
               wall, usage.ru_maxrss / 1024)


def check_bounded(run, codes, exits=(1, 2)):
    """Within the time and memory bounds; exit 2 (unreadable) with one line naming an expected code, exit 1
    with an expected code in the report, exit 0 only where the case's answer is "valid"."""
    assert run.code >= 0, f"killed by signal {-run.code}: {run}"
    assert run.wall < MAX_WALL_S, f"took {run.wall:.2f} s: {run}"
    assert run.rss_mb < MAX_RSS_MB, f"peak RSS {run.rss_mb:.0f} MB: {run}"
    assert run.code in exits, f"expected exit {exits}: {run}"
    lines = run.err.strip("\n").split("\n") if run.err.strip() else []
    if run.code == 2:
        assert len(lines) == 1, f"expected one line on stderr: {run}"
        assert any(c in lines[0] for c in codes), f"expected one of {codes}: {run}"
    elif run.code == 1:
        assert any(c in run.out or c in run.err for c in codes), f"expected one of {codes} in the report: {run}"
    assert not CONTROL.search(run.out + run.err), f"raw control characters in the output: {run}"
    # the figures, for the record (pytest -s shows them)
    print(f"bounds: {' '.join(os.path.basename(str(a)) for a in run.args[1:])}: exit {run.code}, {run.wall:.3f} s, "
          f"{run.rss_mb:.1f} MB")


# ---- building files ---------------------------------------------------------------------------------

def pt_bytes(tree, pickle_bytes=None):
    """torch.save's records around a value tree (or around the given data.pkl)."""
    pkl = Assembler().finish(tree) if pickle_bytes is None else pickle_bytes
    recs = [Record(b"archive/data.pkl", pkl), Record(b"archive/byteorder", b"little")]
    recs += [Record(b"archive/data/" + s.key.encode(), s.data) for s in storages_in(tree)]
    recs.append(Record(b"archive/version", b"3\n"))
    return build_zip(recs)[0]


def floats(n, scale=0.01):
    return struct.pack(f"<{n}f", *((i % 97 - 48) * scale for i in range(n)))


def entry(d, key_index=0):
    w = Storage(str(2 * key_index), FLOAT, d * d, floats(d * d))
    b = Storage(str(2 * key_index + 1), FLOAT, d, floats(d))
    return {"proj_l.weight": Tensor(w, 0, (d, d), (d, 1)), "proj_l.bias": Tensor(b, 0, (d,), (1,))}


def payload(state, **extra):
    return {"settings": dict(SETTINGS), "state": state, "version": 1, **extra}


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)
    return path


def memo_put(index):
    return Raw(b"r" + struct.pack("<I", index))  # LONG_BINPUT: far above the assembler's own indices


def memo_get(index):
    return Raw(b"j" + struct.pack("<I", index))  # LONG_BINGET


SHARED = 200_000  # the memo slot the fan-out cases share one value through


# ---- 1. a tiny storage presenting a huge tensor ----------------------------------------------------

@pytest.mark.parametrize("size,stride", [((1 << 20, 1 << 20), (0, 0)),      # 2^40 elements over 1
                                         ((1 << 14, 1 << 14), (1, 1))],     # overlapping rows over 2^15
                         ids=["stride0", "overlap"])
def test_tiny_storage_huge_tensor(tmp_path, size, stride):
    numel = 1 if stride == (0, 0) else 1 << 15
    s = Storage("0", FLOAT, numel, floats(numel))
    state = {"16:fp32": {"proj_l.weight": Tensor(s, 0, size, stride),
                         "proj_l.bias": Tensor(Storage("1", FLOAT, 16, floats(16)), 0, (16,), (1,))}}
    path = write(tmp_path / "sla_attention.pt", pt_bytes(payload(state)))
    for args in (("inspect", path), ("inspect", path, "--json"), ("verify", path),
                 ("convert", path, tmp_path / "out.safetensors")):
        check_bounded(run_tool(*args), ["E_TENSOR_GEOMETRY"], exits=(2,) if args[0] != "verify" else (1,))
    assert not (tmp_path / "out.safetensors").exists()


def test_head_dim_far_beyond_any_model(tmp_path):
    """A key's head_dim beyond kMaxHeadDim is a schema problem, whatever the tensors hold."""
    state = {"16:fp32": entry(16), "999999:fp32": entry(16, 1)}
    path = write(tmp_path / "sla_attention.pt", pt_bytes(payload(state)))
    run = run_tool("inspect", path)
    check_bounded(run, ["E_SCHEMA"], exits=(1,))
    assert "head_dim 999999 is above 4096" in run.out, run


# ---- 2. very many state entries ----------------------------------------------------------------------

def test_100k_state_entries(tmp_path):
    """100k distinct '<d>:fp32': {} entries (the old duplicate-key check was quadratic: > 15 s)."""
    pairs = [b"X" + struct.pack("<I", len(k)) + k + b"}" for k in (f"{d}:fp32".encode() for d in range(17, 100_017))]
    more = b"".join(b"(" + b"".join(pairs[i:i + 1000]) + b"u" for i in range(0, len(pairs), 1000))  # CPython's batches
    state = Seq([{"16:fp32": entry(16)}, Raw(more)])
    path = write(tmp_path / "sla_attention.pt", pt_bytes(payload(state)))
    assert os.path.getsize(path) < 4 << 20
    for args in (("inspect", path), ("verify", path), ("convert", path, tmp_path / "out.safetensors")):
        run = run_tool(*args)
        check_bounded(run, ["E_LIMIT"], exits=(2,) if args[0] != "verify" else (1,))
        assert "cap is 1024" in run.out + run.err, run


def test_1000_entries_is_answered(tmp_path):
    """Under the cap, many distinct entries get a correct, complete answer quickly."""
    state = {f"{d}:fp32": entry(4, d) for d in range(1, 1001)}
    path = write(tmp_path / "sla_attention.pt", pt_bytes(payload(state)))
    run = run_tool("inspect", path, "--json")
    check_bounded(run, ["E_SCHEMA"], exits=(1,))
    report = json.loads(run.out)
    assert len(report["entries"]) == 1000
    # every entry but 4:fp32 has [4, 4] tensors for a larger head_dim: one shape problem per tensor
    assert sum(p["code"] == "E_SCHEMA" for p in report["problems"]) == 2 * 999


def raw_pt(pickle_body):
    return build_zip([Record(b"archive/data.pkl", pickle_body), Record(b"archive/version", b"3\n")])[0]


def batched(items, opener=b"]"):
    """A list built the way CPython writes it: APPENDS in batches of 1000."""
    body = bytearray(b"\x80\x02" + opener)
    for start in range(0, len(items), 1000):
        body += b"(" + b"".join(items[start:start + 1000]) + b"e"
    return bytes(body) + b"."


@pytest.mark.parametrize("name,body,code", [
    # 4M values in a flat list: ~700 MB of value objects before the cap on values was lowered
    ("values", lambda: batched([b"K\x01"] * (4 << 20)), "E_LIMIT"),
    # 1M values left on the stack: ~370 MB before the stack cap was lowered
    ("stack", lambda: b"\x80\x02" + b"K\x01" * (1 << 20) + b".", "E_LIMIT"),
    # 1M memo slots, each holding a value: ~430 MB before the memo cap was lowered
    ("memo", lambda: batched([b"K\x01r" + struct.pack("<I", i) for i in range(1 << 20)]), "E_MEMO"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_many_small_values(tmp_path, name, body, code):
    path = write(tmp_path / "sla_attention.pt", raw_pt(body()))
    assert os.path.getsize(path) < 10 << 20
    for args in (("inspect", path), ("verify", path)):
        check_bounded(run_tool(*args), [code], exits=(2,) if args[0] != "verify" else (1,))


# ---- 3. one value reused many times through the pickle memo ------------------------------------------

def test_memo_fanout_of_a_tensor_entry(tmp_path):
    """1000 state entries that are all the same 2.7 MB entry (BINGET): 2.7 GB once expanded."""
    d = 820
    shared = entry(d)
    state = {f"{d}:fp32": Seq([shared, memo_put(SHARED)])}
    state.update({f"{d}:t{i}": memo_get(SHARED) for i in range(999)})
    tree = payload(state)
    path = write(tmp_path / "sla_attention.pt", pt_bytes(tree))
    assert os.path.getsize(path) < 3 << 20
    for args in (("inspect", path), ("verify", path), ("convert", path, tmp_path / "out.safetensors")):
        run = run_tool(*args)
        check_bounded(run, ["E_LIMIT"], exits=(2,) if args[0] != "verify" else (1,))
        assert "expand to more than" in run.out + run.err, run


def test_memo_fanout_of_a_string(tmp_path):
    """8000 extension values that are all the same 1 MiB string: 8 GiB once copied out."""
    big = "w" * ((1 << 20) - 16)
    ext = {"writer": Seq([big, memo_put(SHARED)])}
    ext.update({f"k{i}": memo_get(SHARED) for i in range(8000)})
    path = write(tmp_path / "sla_attention.pt", pt_bytes(payload({"16:fp32": entry(16)}, sla_toolkit=ext)))
    assert os.path.getsize(path) < 2 << 20
    for args in (("inspect", path), ("inspect", path, "--json"), ("verify", path)):
        run = run_tool(*args)
        check_bounded(run, ["E_LIMIT"], exits=(2,) if args[0] != "verify" else (1,))


def test_memo_fanout_within_budget_is_answered(tmp_path):
    """Sharing that expands to little is legal (CPython writes [d, d] this way): a correct answer."""
    shared = entry(8)
    state = {"8:fp32": Seq([shared, memo_put(SHARED)]), "8:bf16": memo_get(SHARED)}
    path = write(tmp_path / "sla_attention.pt", pt_bytes(payload(state, sla_toolkit={"variant": "all"})))
    run = run_tool("inspect", path, "--json")
    check_bounded(run, [], exits=(0,))
    report = json.loads(run.out)
    assert [e["key"] for e in report["entries"]] == ["8:fp32", "8:bf16"]
    expected = struct.unpack("<64f", floats(64))
    weight = report["entries"][1]["tensors"][0]
    assert weight["sum"] == pytest.approx(sum(expected), abs=1e-4)
    assert weight["max"] == pytest.approx(max(expected))


# ---- 4. safetensors headers listing tens of thousands of tensors -------------------------------------

def safetensors_bytes(tensors, metadata=None):
    """tensors: [(name, dtype, shape, itemsize)]; zero-filled data, contiguous from offset 0."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, itemsize in tensors:
        n = itemsize
        for s in shape:
            n *= s
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"\0" * offset


N_TENSORS = 40_000


def test_twin_with_40k_tensors(tmp_path):
    meta = {"format": "sla_attention", "version": "1", "settings": json.dumps(SETTINGS)}
    tensors = []
    for i in range(N_TENSORS // 2):
        tensors += [(f"{i + 1}:fp32/proj_l.weight", "F32", (1, 1), 4), (f"{i + 1}:fp32/proj_l.bias", "F32", (1,), 4)]
    twin = write(tmp_path / "sla_attention.safetensors", safetensors_bytes(tensors, meta))
    check_bounded(run_tool("verify", twin), ["E_LIMIT"], exits=(1,))
    check_bounded(run_tool("verify", tmp_path, "--expect-sla"), ["E_LIMIT"], exits=(1,))
    check_bounded(run_tool("convert", twin, tmp_path / "out.pt"), ["E_LIMIT"], exits=(2,))
    assert not (tmp_path / "out.pt").exists()


def test_weights_with_40k_tensors_in_the_folder(tmp_path):
    """verify reads only the weights' headers, and a huge one quickly: the dtype answer stays right."""
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"attention_head_dim": 16}))
    tensors = [(f"blocks.{i}.weight", "BF16", (2,), 2) for i in range(N_TENSORS)]
    write(tmp_path / "transformer" / "diffusion_pytorch_model.safetensors", safetensors_bytes(tensors))
    write(tmp_path / "sla_attention.pt", pt_bytes(payload({"16:bf16": entry(16)}, sla_toolkit={"variant": "all"})))
    run = run_tool("verify", tmp_path, "--json")
    check_bounded(run, [], exits=(0,))
    report = json.loads(run.out)
    coverage = [c for c in report["checks"] if c["id"] == "coverage"]
    assert coverage and coverage[0]["status"] == "ok" and "16:bf16" in coverage[0]["message"], report


# ---- 5. a file that shrinks while it is read ------------------------------------------------------------
# Deterministic coverage is in test_mapped_file.cpp (truncation between open and read). Here the real
# race, at several delays: whatever the moment, the tool never dies of SIGBUS and an error is one line.

def test_file_truncated_while_inspected(tmp_path):
    d = 2048  # a 16 MiB weight: statistics take long enough for the truncation to land mid-read
    w = Storage("0", FLOAT, d * d, b"\x00\x00\x80\x3f" * (d * d))
    state = {f"{d}:fp32": {"proj_l.weight": Tensor(w, 0, (d, d), (d, 1)),
                           "proj_l.bias": Tensor(Storage("1", FLOAT, d, floats(d)), 0, (d,), (1,))}}
    blob = pt_bytes(payload(state))
    path = tmp_path / "sla_attention.pt"
    outcomes = []
    for delay in (0.0, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02):
        write(path, blob)
        proc = subprocess.Popen([SLA_CKPT, "inspect", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        os.truncate(path, 4096)  # what a trainer rewriting the file in place does first
        _, err = proc.communicate(timeout=KILL_AFTER_S)
        err = err.decode(errors="replace")
        assert proc.returncode >= 0, f"killed by signal {-proc.returncode} (delay {delay}): {err!r}"
        assert proc.returncode in (0, 2), f"delay {delay}: exit {proc.returncode}: {err!r}"
        if proc.returncode == 2:
            assert len(err.strip().split("\n")) == 1, err
        outcomes.append(err.strip().split(":")[1].strip() if proc.returncode == 2 else "read before the truncation")
    print(f"truncated while inspected: {outcomes}")
    # a file that changed under the reader is named as such (not, say, as a CRC error of zeros)
    assert all(o in ("E_CHANGED", "E_TRUNCATED", "read before the truncation") for o in outcomes), outcomes


# ---- 6. FIFOs, devices and sockets ---------------------------------------------------------------------

@pytest.fixture
def odd_files(tmp_path):
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.pt"
    os.symlink("/dev/zero", zero)
    sock_path = tmp_path / "sock.pt"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    sock.listen(1)
    twin_fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(twin_fifo)
    yield {"fifo": (fifo, "FIFO"), "device": (zero, "character device"), "socket": (sock_path, "socket"),
           "twin_fifo": (twin_fifo, "FIFO")}
    sock.close()


@pytest.mark.parametrize("kind", ["fifo", "device", "socket", "twin_fifo"])
def test_not_a_regular_file(tmp_path, odd_files, kind):
    path, words = odd_files[kind]
    out = tmp_path / ("out.pt" if path.suffix == ".safetensors" else "out.safetensors")
    runs = [run_tool("convert", path, out), run_tool("verify", path)]
    if path.suffix == ".pt":
        runs.append(run_tool("inspect", path))
    for run in runs:
        check_bounded(run, ["E_IO"], exits=(2,))
        assert words in run.err, run
    assert not out.exists()


# ---- 7. strings from the file reaching the terminal ---------------------------------------------------

FORGED = "\n verify: ok\x1b]0;x\x07"


def test_control_characters_are_escaped(tmp_path):
    ext = {"writer": "trainer" + FORGED, "variant": "all"}
    state = {"16:fp32": entry(16), "16:bf16" + FORGED: entry(16, 1)}  # a key outside the grammar: a problem
    path = write(tmp_path / "sla_attention.pt", pt_bytes(payload(state, sla_toolkit=ext)))
    for args in (("inspect", path), ("verify", path), ("convert", path, tmp_path / "out.safetensors")):
        run = run_tool(*args)
        check_bounded(run, ["E_SCHEMA"], exits=(1,))
        lines = [line.strip() for line in (run.out + run.err).split("\n")]
        assert "verify: ok" not in lines, run
        assert "\x1b" not in run.out + run.err and "\x07" not in run.out + run.err, run
    # the text is shown, escaped, not dropped
    assert "trainer\\n verify: ok\\x1b]0;x\\x07" in run_tool("inspect", path).out
    # JSON output keeps the exact string (escaped by JSON itself)
    report = json.loads(run_tool("inspect", path, "--json").out)
    assert report["extension"]["writer"] == "trainer" + FORGED
