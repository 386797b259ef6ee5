"""pytest plugin of the py_*_hf2 runs (tests/CMakeLists.txt loads it with -p): fail at once unless
the huggingface_hub imported has the major version SLA_HF_MAJOR names."""
import os


def pytest_sessionstart(session):
    major = os.environ["SLA_HF_MAJOR"]
    import huggingface_hub

    assert huggingface_hub.__version__.split(".")[0] == major, (huggingface_hub.__version__, huggingface_hub.__file__)
