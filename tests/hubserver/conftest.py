"""Shared by the local Hub server tests."""
import os


def pytest_sessionstart(session):
    """The py_*_hf2 runs: fail at once unless the huggingface_hub imported is the one asked for."""
    major = os.environ.get("SLA_HF_MAJOR")
    if major:
        import huggingface_hub
        assert huggingface_hub.__version__.split(".")[0] == major, (huggingface_hub.__version__, huggingface_hub.__file__)
