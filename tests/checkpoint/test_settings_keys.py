"""Each SLA settings key ("topk", ...) is a string literal in one source file under src/ and tools/:
the schema, src/checkpoint/sla_settings.h. Everything else uses its constants (kSettingTopk, ...).
SLA_SOURCE_ROOT (default: the repository) points the check at another tree."""
import os
import pathlib
import re

import pytest

KEYS = ["topk", "feature_map", "blkq", "blkk", "tie_feature_map_qk"]
SCHEMA = "src/checkpoint/sla_settings.h"
SUFFIXES = {".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh", ".py", ".in"}
ROOT = pathlib.Path(os.environ.get("SLA_SOURCE_ROOT", pathlib.Path(__file__).resolve().parents[2]))


def files_with_literal(root, key):
    """Source files under root/src and root/tools holding "key" (or 'key' in Python)."""
    pattern = re.compile(r'"%s"' % re.escape(key))
    py_pattern = re.compile(r"""["']%s["']""" % re.escape(key))
    found = []
    for top in ("src", "tools"):
        for path in sorted((root / top).rglob("*")):
            if not path.is_file() or path.suffix not in SUFFIXES:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if (py_pattern if path.suffix == ".py" else pattern).search(text):
                found.append(path.relative_to(root).as_posix())
    return found


def test_tree_has_sources():
    assert len(list((ROOT / "src").rglob("*.cpp"))) > 20, ROOT


@pytest.mark.parametrize("key", KEYS)
def test_key_written_once(key):
    found = files_with_literal(ROOT, key)
    assert found == [SCHEMA], f'"{key}" is a string literal in {found}; only {SCHEMA} may write it'


def test_detector_sees_a_second_file(tmp_path):
    # The oracle: a tree built here with the key in the schema and in one more file.
    (tmp_path / "src" / "checkpoint").mkdir(parents=True)
    (tmp_path / "tools" / "x").mkdir(parents=True)
    (tmp_path / SCHEMA).write_text('inline constexpr const char* kSettingBlkq = "blkq";\n')
    (tmp_path / "tools" / "x" / "a.cpp").write_text('int f(json& s) { return s["blkq"]; }\n')
    (tmp_path / "tools" / "x" / "b.py").write_text("cfg = {'blkq': 64}\n")
    (tmp_path / "tools" / "x" / "c.cpp").write_text('const char* s = "blkqq"; // blkq\n')
    assert files_with_literal(tmp_path, "blkq") == [SCHEMA, "tools/x/a.cpp", "tools/x/b.py"]
