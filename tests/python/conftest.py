"""Which sla_toolkit these tests exercise: the installed package when the interpreter has one
(`pip install .`; tools/test.sh installs it into .venv), else the source tree's python/ folder with
this build's operator library ($SLA_OPS_LIB, set by CTest). test_package_install.py tells the two
apart."""
import importlib.util
import os
import sys

SOURCE = os.environ.get("SLA_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
if importlib.util.find_spec("sla_toolkit") is None:
    sys.path.insert(0, os.path.join(SOURCE, "python"))
