"""Layering rules of issue 12, checked on the sources (no build needed).

1. Library code never prints or exits: no file under src/ writes to stdout/stderr (iostreams,
   printf family, fmt::print, puts, perror, naming stdout/stderr or their descriptors) or ends the
   process (exit, _exit, _Exit, quick_exit, abort, std::terminate, assert, __trap). Libraries hand
   text to a log callback and progress to a progress callback; tools/ draws and prints.
2. The Hub server (src/hub/server) and the Hub client (src/hub/*) share only src/hub/common: no
   server file includes a client header, no client file includes a server header.
3. tools/ includes only public headers: nothing private to the server (src/hub/server outside
   its include/ folder).

Comments and string literals are blanked before matching, so prose about stderr is fine; every
exception is listed in EXCEPTIONS with the exact line and why, and an exception that no longer
matches anything fails the test too.
"""
import os
import re
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("SLA_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SOURCE_SUFFIXES = {".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".cu", ".cuh", ".inl"}

# (pattern name, regex) over code with comments and string literals blanked.
PRINT_OR_EXIT = [
    ("iostream", re.compile(r"\b(std::)?(cout|cerr|clog|wcout|wcerr|wclog)\b")),
    ("printf", re.compile(r"(?<![\w.>])(std::)?(printf|vprintf|wprintf|puts|putchar|perror)\s*\(")),
    ("std stream", re.compile(r"\b(stdout|stderr|STDOUT_FILENO|STDERR_FILENO)\b")),
    ("fmt::print", re.compile(r"\bfmt::(v\d+::)?(print|println|vprint)\s*\(")),
    ("process exit", re.compile(r"(?<![\w.>])(::|std::)?(exit|_exit|_Exit|quick_exit|abort|terminate)\s*\(")),
    ("assert", re.compile(r"(?<![\w.>])assert\s*\(")),
    ("device trap", re.compile(r"\b(__trap|__brkpt)\s*\(")),
]

_SM90_TRAP = ("device code of an sm_90a kernel compiled for another architecture: the launcher never "
              "selects it, so the trap marks unreachable code (device code cannot throw)")
# Exact (path, code of the line without comments) pairs that may match, each with its reason. Nothing else.
EXCEPTIONS = {
    ("src/sla/kernels/sla_fwd_sm90_kernel.cuh", "__trap();"): _SM90_TRAP,
    ("src/sla/kernels/sla_bwd_sm90_kernel.cuh", "__trap();"): _SM90_TRAP,
    ("src/sla/kernels/sla_fwd_ws_sm90_kernel.cuh", "__trap();"): _SM90_TRAP,
    ("src/sla/kernels/sla_bwd_dq_ws_sm90_kernel.cuh", "__trap();"): _SM90_TRAP,
    ("src/sla/kernels/sla_bwd_dkdv_ws_sm90_kernel.cuh", "__trap();"): _SM90_TRAP,
    ("src/sla/kernels/linear_state_ws_sm90_kernel.cuh", "__trap();"): _SM90_TRAP,
    ("src/sla/kernels/linear_bwd_q_ws_sm90_kernel.cuh", "__trap();"): _SM90_TRAP,
}


def strip_comments_and_strings(text):
    """Blank // and /* */ comments and "..." / '...' literals (raw strings too), keeping newlines."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            k = text.find("(", i + 2)
            delim = text[i + 2:k]
            j = text.find(")" + delim + '"', k)
            j = n if j < 0 else j + len(delim) + 2
            out.append('""' + re.sub(r"[^\n]", " ", text[i + 2:j]))
            i = j
        elif c in "\"'":
            if c == "'" and i > 0 and text[i - 1].isalnum():  # digit separator 1'000
                out.append(c)
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + (c if j < n else ""))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def source_files(*folders):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in SOURCE_SUFFIXES and path.is_file():
                yield path


def print_or_exit_hits(rel, text):
    hits = []
    code_lines = strip_comments_and_strings(text).split("\n")
    raw_lines = text.split("\n")
    for number, line in enumerate(code_lines, 1):
        for name, pattern in PRINT_OR_EXIT:
            if pattern.search(line):
                hits.append((rel, number, name, raw_lines[number - 1].strip(), line.strip()))
    return hits


def includes_of(path):
    text = strip_comments_and_strings_keep_includes(path.read_text(errors="replace"))
    return re.findall(r'^\s*#\s*include\s*"([^"]+)"', text, re.M)


def strip_comments_and_strings_keep_includes(text):
    # Include lines are the only string literals we need; comments go.
    return re.sub(r"/\*.*?\*/", "", re.sub(r"//[^\n]*", "", text), flags=re.S)


def test_patterns_catch_what_they_should():
    # An independent oracle for the matcher: lines that print or exit, and lines that do not.
    bad = ['std::cerr << "x";', 'fmt::print(stderr, "{}", 1);', 'fmt::print("{}\\n", x);', 'printf("%d", 1);',
           'std::fputc(\'\\n\', stderr);', "fprintf(stdout, s);", "exit(1);", "std::exit(2);", "::_exit(0);",
           "std::abort();", "std::terminate();", "assert(x > 0);", "perror(path);", "puts(s);",
           "isatty(STDERR_FILENO);", "__trap();", "std::cout << 1;"]
    good = ['// prints to stderr', '/* exit(1) */', 'auto s = "std::cerr << x; exit(1)";', "snprintf(b, 4, f);",
            "static_assert(D % 16 == 0, \"x\");", "app.exit(e);", "should_exit(1);", "log(LogLevel::kInfo, m);",
            "fmt::format(\"{}\", 1);", "std::fprintf(file, f);", "on_exit_code = 1;"]
    for line in bad:
        assert print_or_exit_hits("x.cpp", line), line
    for line in good:
        assert not print_or_exit_hits("x.cpp", line), line


def test_library_code_never_prints_or_exits():
    hits, used = [], set()
    for path in source_files("src"):
        rel = path.relative_to(ROOT).as_posix()
        for hit in print_or_exit_hits(rel, path.read_text(errors="replace")):
            key = (hit[0], hit[4])
            if key in EXCEPTIONS:
                used.add(key)
                continue
            hits.append(hit)
    assert not hits, "library code prints or exits:\n" + "\n".join(f"  {r}:{n}: [{k}] {s}" for r, n, k, s, _ in hits)
    stale = set(EXCEPTIONS) - used
    assert not stale, f"exceptions that match nothing any more (remove them): {sorted(stale)}"


def hub_parts():
    hub = ROOT / "src/hub"
    client = [p for p in source_files("src/hub") if p.parent == hub]
    server = list(source_files("src/hub/server"))
    common = list(source_files("src/hub/common"))
    return client, server, common


def test_hub_client_and_server_share_only_common():
    client, server, common = hub_parts()
    client_headers = {p.name for p in client if p.suffix == ".h"}
    server_headers = {p.name for p in server if p.suffix == ".h"}
    common_headers = {p.name for p in common if p.suffix == ".h"}
    assert client and server, "src/hub or src/hub/server not found"
    clash = (client_headers | server_headers) & common_headers
    assert not clash, f"header names in common and elsewhere: {sorted(clash)}"
    bad = []
    for path in server:
        bad += [(path, inc) for inc in includes_of(path) if Path(inc).name in client_headers]
    for path in client:
        bad += [(path, inc) for inc in includes_of(path) if Path(inc).name in server_headers]
    for path in common:
        bad += [(path, inc) for inc in includes_of(path) if Path(inc).name in client_headers | server_headers]
    assert not bad, "cross includes between Hub client and server:\n" + "\n".join(
        f"  {p.relative_to(ROOT)} includes {inc}" for p, inc in bad)


def test_tools_include_public_headers_only():
    # Public headers of the server: src/hub/server/include/; everything else there is private.
    server = ROOT / "src/hub/server"
    public = {p.name for p in (server / "include").rglob("*.h")} if (server / "include").is_dir() else set()
    private = {p.name for p in server.rglob("*.h") if (server / "include") not in p.parents} - public
    assert private, "no private server headers found: the rule checks nothing"
    bad = [(p, inc) for p in source_files("tools") for inc in includes_of(p) if Path(inc).name in private]
    assert not bad, "tools include private headers:\n" + "\n".join(f"  {p.relative_to(ROOT)} includes {inc}" for p, inc in bad)


def library_headers():
    """Header name -> its folder, for every header of a library under src/ (names are unique there)."""
    headers = {}
    for path in source_files("src"):
        if path.suffix in {".h", ".hpp", ".cuh"}:
            assert path.name not in headers, f"two library headers named {path.name}: prefixes would be ambiguous"
            headers[path.name] = path.parent
    return headers


def test_includes_are_project_prefixed():
    # A library header is included as "sla/<area>/x.h" from anywhere but its own folder, where it is
    # included plainly; a flat "errors.h" from another folder would find nothing to compile against.
    headers = library_headers()
    assert {"errors.h", "sla_config.h", "hub_client.h", "support.h"} <= set(headers)
    prefixes = {"src/checkpoint": "sla/checkpoint/", "src/hub/common": "sla/hub/common/",
                "src/hub/server/include": "sla/hub_server/", "src/hub": "sla/hub/", "src/sla": "sla/"}
    bad = []
    for path in source_files("src", "tools", "tests", "examples", "bench"):
        for inc in includes_of(path):
            name = Path(inc).name
            if name not in headers:
                continue  # a tool's or test's own header
            folder = headers[name]
            if inc == name and path.parent == folder:
                continue
            rel = folder.relative_to(ROOT).as_posix()
            area = next(a for a in prefixes if rel == a or rel.startswith(a + "/"))
            want = prefixes[area] + (folder / name).relative_to(ROOT / area).as_posix()
            if inc != want:
                bad.append(f"  {path.relative_to(ROOT)} includes \"{inc}\" (want \"{want}\")")
    assert not bad, "includes without the project prefix:\n" + "\n".join(bad)


def test_one_root_namespace():
    # sla::checkpoint, sla::hub, sla::cli, sla::kernels... under one root; the old roots are gone.
    bad = []
    for path in source_files("src", "tools", "tests", "examples", "bench"):
        code = strip_comments_and_strings(path.read_text(errors="replace"))
        for match in re.finditer(r"^\s*namespace\s+([A-Za-z_][\w:]*)\s*\{", code, re.M):
            root = match.group(1).split("::")[0]
            if root not in {"sla", "sla_dit"}:
                bad.append(f"  {path.relative_to(ROOT)}: namespace {match.group(1)}")
    assert not bad, "namespaces outside the root sla (the example's own: sla_dit):\n" + "\n".join(bad)


def ninja_link_statements(build_dir):
    """Output -> the text of its link statement (inputs, implicit inputs, LINK_LIBRARIES) in build.ninja."""
    text = (build_dir / "build.ninja").read_text()
    statements = {}
    for block in re.split(r"\n(?=build )", text):
        head = block.split("\n", 1)[0]
        m = re.match(r"build (\S+?): (\S*LINKER\S*) ", head)
        if m:
            statements[m.group(1)] = block
    return statements


def test_tools_link_no_example():
    build = Path(os.environ.get("SLA_BUILD_DIR", ""))
    if not (build / "build.ninja").is_file():
        pytest.skip("no Ninja build folder (SLA_BUILD_DIR) to read link lines from")
    links = ninja_link_statements(build)
    tools = {out: block for out, block in links.items() if out.startswith("tools/")}
    assert any(out.endswith("/sla-ckpt") for out in tools), f"sla-ckpt's link not found among {sorted(links)[:20]}"
    if not any(out.startswith("examples/") for out in links):
        pytest.skip("a build without the example (SLA_WITH_TORCH=OFF): nothing a tool could link")
    bad = [out for out, block in tools.items() if re.search(r"(^|[\s/])examples/|libsla_dit", block)]
    assert not bad, f"tools link an example target: {bad}"
