"""A >= 100 MB LFS file through `sla-ckpt hub serve` with the real huggingface_hub client: uploaded
with the server's default multipart settings (64 MiB threshold, 16 MiB parts), downloaded back
identical, with the server streaming both ways."""
import hashlib
import os
import tempfile

os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hubsrv-hfhome-"))

from huggingface_hub import HfApi, hf_hub_download  # noqa: E402
from huggingface_hub.utils._http import close_session  # noqa: E402

from hubserver_fixture import TOKEN, HubServer  # noqa: E402

MiB = 1 << 20


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def test_100mb_multipart_round_trip(tmp_path):
    srv = HubServer(tmp_path / "root")
    try:
        api = HfApi(endpoint=srv.url, token=TOKEN)
        api.create_repo("alice/large")
        big = tmp_path / "model.safetensors"
        with open(big, "wb") as f:
            for _ in range(101):
                f.write(os.urandom(MiB))
            f.write(b"tail")  # 7 parts of 16 MiB, the last one short
        api.upload_file(path_or_fileobj=str(big), path_in_repo="model.safetensors", repo_id="alice/large")
        lfs = next(iter(api.get_paths_info("alice/large", ["model.safetensors"]))).lfs
        expected = file_sha256(big)
        assert lfs.sha256 == expected and lfs.size == big.stat().st_size
        stored = srv.root / "objects" / expected[:2] / expected
        assert stored.stat().st_size == big.stat().st_size
        path = hf_hub_download("alice/large", "model.safetensors", endpoint=srv.url, token=TOKEN,
                               cache_dir=tmp_path / "cache")
        assert file_sha256(path) == expected
        assert list((srv.root / "uploads").iterdir()) == [] and list((srv.root / "tmp").iterdir()) == []
    finally:
        close_session()
        assert srv.stop() == 0
