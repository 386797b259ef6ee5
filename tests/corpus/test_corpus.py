"""`sla-ckpt inspect FILE [--json]` over the generated corpus (make_corpus.py, corpus.json).

For every file, from a writable folder and from a read-only one:
- the exit status is one the manifest allows, never a signal or a sanitizer report;
- exit 2 (unreadable) prints exactly one line on stderr, naming one of the expected codes and where;
  exit 1 (readable, with problems) lists one of the expected codes in its report, at most one line on stderr;
- plain and --json agree on the exit status; --json prints one JSON object when the file is readable;
- files that may be accepted report the tensor statistics torch computed for them;
- the input is byte-for-byte and metadata unchanged, and nothing new appears in its folder.
The corpus folder is $SLA_CORPUS_DIR, else <build>/tests/corpus/generated.
"""
import hashlib
import json
import math
import os
import resource
import shutil
import stat
import subprocess
import tempfile

import pytest

BUILD = os.environ.get("SLA_BUILD_DIR", "build")
CORPUS = os.environ.get("SLA_CORPUS_DIR", os.path.join(BUILD, "tests", "corpus", "generated"))
SLA_CKPT = os.environ.get("SLA_CKPT", os.path.join(BUILD, "tools", "sla_ckpt", "sla-ckpt"))
# Address-space cap for the tool (MiB): a reader that allocates what a hostile header declares fails
# here instead of swapping. ASan reserves terabytes of virtual memory, so sanitize.sh sets 0 (off).
RLIMIT_AS_MB = int(os.environ.get("SLA_CORPUS_RLIMIT_AS_MB", "4096"))
TIMEOUT_S = 120
SANITIZER_MARKS = ("Sanitizer", "runtime error:", "LeakSanitizer")
PWNED = "/tmp/sla_corpus_pwned"
NOBODY = 65534


def manifest():
    path = os.path.join(CORPUS, "corpus.json")
    if not os.path.exists(path):
        pytest.fail(f"no corpus at {CORPUS}: run make_corpus.py (CTest fixture corpus_generate) first",
                    pytrace=False)
    with open(path) as f:
        return json.load(f)


def limit_memory():
    if RLIMIT_AS_MB > 0:
        limit = RLIMIT_AS_MB << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_inspect_both(path, as_nobody):
    """Runs `inspect FILE` and `inspect FILE --json` side by side (halves the corpus's wall time)."""
    base = [SLA_CKPT, "inspect", path]
    if as_nobody:
        # root ignores folder permissions: drop to nobody so the read-only folder really is one
        base = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + base
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=os.path.dirname(path),
                              preexec_fn=limit_memory) for cmd in (base, base + ["--json"])]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def copy_sparse_aware(src, dst):
    """Copies only the data regions: the corpus holds a sparse file far larger than the disk."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                offset = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError:  # no data after offset: the rest is a hole
                break
            end = os.lseek(fin.fileno(), offset, os.SEEK_HOLE)
            fin.seek(offset)
            fout.seek(offset)
            fout.write(fin.read(end - offset))
            offset = end
        fout.truncate(size)


def fingerprint(path):
    st = os.stat(path)
    digest = hashlib.sha256()
    # the sparse giant holds its bytes in the first MiB; size, mtime and mode guard the rest
    budget = st.st_size if st.st_size <= 1 << 30 else 1 << 20
    with open(path, "rb") as f:
        digest.update(f.read(budget))
    return digest.hexdigest(), st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode)


def check_stats(report, expect, file):
    entries = {e["key"]: e for e in report.get("entries", [])}
    assert set(entries) == set(expect), f"{file}: entries {sorted(entries)} != torch's {sorted(expect)}"
    for key, tensors in expect.items():
        got = {t["name"]: t for t in entries[key]["tensors"]}
        assert set(got) == set(tensors), f"{file}: {key}: tensors {sorted(got)} != {sorted(tensors)}"
        for name, want in tensors.items():
            t = got[name]
            where = f"{file}: {key}/{name}"
            assert t["dtype"] == "float32", where
            assert list(t["shape"]) == want["shape"], where
            for field in ("min", "max", "abs_max"):
                assert t[field] == pytest.approx(want[field], rel=1e-6, abs=1e-12), f"{where}: {field}"
            # room for a float32 accumulation against torch's float64 sum
            tolerance = 1e-5 * math.prod(want["shape"]) * want["abs_max"] + 1e-9
            assert abs(t["sum"] - want["sum"]) <= tolerance, f"{where}: sum {t['sum']} vs torch {want['sum']}"
            assert t["finite"] is True, where


def check_run(entry, result, json_mode):
    file = entry["file"]
    mode = "--json" if json_mode else "plain"
    stderr = result.stderr.decode(errors="replace")
    what = f"{file} ({mode}): exit {result.returncode}, stderr: {stderr.strip()[:2000]!r}"
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {what}"
    assert not any(m in stderr for m in SANITIZER_MARKS), f"sanitizer report: {what}"
    assert result.returncode in entry["expected_exit"], f"expected exit {entry['expected_exit']}: {what}"
    lines = stderr.strip("\n").split("\n") if stderr.strip() else []
    if result.returncode == 2:
        # unreadable: exactly one line, with the code and where
        assert len(lines) == 1, f"expected exactly one line on stderr: {what}"
        assert any(code in lines[0] for code in entry["expected_codes"]), \
            f"expected one of {entry['expected_codes']}: {what}"
        assert " in " in lines[0], f"the error does not say where (record, offset or file): {what}"
    elif result.returncode == 1:
        # readable with problems: the problems are the report (stdout), at most a one-line summary on stderr
        assert len(lines) <= 1, f"expected at most one line on stderr: {what}"
        stdout = result.stdout.decode(errors="replace")
        assert any(code in stdout or code in stderr for code in entry["expected_codes"]), \
            f"expected one of {entry['expected_codes']} in the report: {what}, stdout: {stdout[-2000:]!r}"
    elif "W_COMPAT" in entry["expected_codes"]:
        # valid with forward-compatibility warnings (W_COMPAT): they are in the report
        stdout = result.stdout.decode(errors="replace")
        assert "W_COMPAT" in stdout, \
            f"expected one of {entry['expected_codes']} in the report: {what}, stdout: {stdout[-2000:]!r}"
    report = None
    if json_mode and (result.returncode in (0, 1) or result.stdout.strip()):
        report = json.loads(result.stdout)
        assert isinstance(report, dict), what
    if result.returncode == 0 and entry.get("expect") is not None and report is not None:
        check_stats(report, entry["expect"], file)
    return report


@pytest.fixture(params=["writable", "read_only"])
def placement(request):
    return request.param


@pytest.mark.parametrize("entry", manifest(), ids=lambda e: e["file"])
def test_inspect(entry, placement):
    folder = tempfile.mkdtemp(prefix="sla_corpus_")
    try:
        path = os.path.join(folder, entry["file"])
        copy_sparse_aware(os.path.join(CORPUS, entry["file"]), path)
        as_nobody = False
        if placement == "read_only":
            os.chmod(path, 0o444)
            os.chmod(folder, 0o555)
            as_nobody = os.geteuid() == 0
            if as_nobody and shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: a read-only folder cannot be enforced")
        before = fingerprint(path)
        plain, as_json = run_inspect_both(path, as_nobody)
        check_run(entry, plain, False)
        check_run(entry, as_json, True)
        assert plain.returncode == as_json.returncode, f"{entry['file']}: plain and --json exit codes differ"
        assert fingerprint(path) == before, f"{entry['file']}: the input was modified"
        assert os.listdir(folder) == [entry["file"]], f"{entry['file']}: wrote {os.listdir(folder)}"
        assert not os.path.exists(PWNED), f"{entry['file']}: a hostile global ran"
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)


def test_manifest_covers_section_7():
    """Every applicable row of checkpoint-safety.md section 7 (1-34) has files, and valid files exist."""
    rows = {e["row"] for e in manifest()}
    assert set(range(1, 35)) <= rows
    assert any(e["expected_exit"] == [0] for e in manifest())
