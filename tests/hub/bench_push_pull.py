"""Push and pull 1 GiB over loopback with sla-ckpt and with huggingface_hub against the same
`sla-ckpt hub serve`, in the same run; prints both times and the ratio (ours / Python; <= 1 means
ours is at least as fast). Each side runs --rounds times in alternating order, to fresh repos and
folders, and the best time counts: the machine's page cache and other load then favour neither. Run by hand: SLA_CKPT=build/tools/sla_ckpt/sla-ckpt .venv/bin/python
tests/hub/bench_push_pull.py [--size-mib 1024]. Not part of CI."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import HubServer, hub_env, run_ckpt, run_python, sha256_of, write_big  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        src.mkdir()
        write_big(src / "weights.bin", args.size_mib << 20)
        (src / "config.json").write_text(json.dumps({"hidden_size": 64}))
        digest = sha256_of(src / "weights.bin")
        server = HubServer(tmp / "root")
        try:
            ours_env = hub_env(server, tmp / "hf_ours")
            py_env = hub_env(server, tmp / "hf_py")

            times = {"push_ours": [], "push_py": [], "pull_ours": [], "pull_py": []}
            for n in range(args.rounds):
                def our_push():
                    r = run_ckpt("push", src, f"alice/bench-ours-{n}", env=ours_env)
                    assert r.returncode == 0, r.stderr

                def py_push():
                    run_python("from huggingface_hub import HfApi; api = HfApi(); "
                               f"api.create_repo('alice/bench-py-{n}', exist_ok=True); "
                               f"api.upload_folder(folder_path={str(src)!r}, repo_id='alice/bench-py-{n}'); print(1)", py_env)

                def our_pull():
                    r = run_ckpt("pull", f"alice/bench-py-{n}", "--local-dir", tmp / f"ours_dl{n}", env=ours_env)
                    assert r.returncode == 0, r.stderr

                def py_pull():
                    run_python("from huggingface_hub import snapshot_download; "
                               f"snapshot_download('alice/bench-ours-{n}', local_dir={str(tmp / f'py_dl{n}')!r}); print(1)",
                               py_env)

                pushes = [("push_ours", our_push), ("push_py", py_push)]
                pulls = [("pull_ours", our_pull), ("pull_py", py_pull)]
                if n % 2:
                    pushes.reverse()
                    pulls.reverse()
                for name, fn in pushes + pulls:
                    times[name].append(timed(fn))
                assert sha256_of(tmp / f"ours_dl{n}" / "weights.bin") == digest
                assert sha256_of(tmp / f"py_dl{n}" / "weights.bin") == digest
                shutil.rmtree(tmp / f"ours_dl{n}")
                shutil.rmtree(tmp / f"py_dl{n}")
            t_push_ours, t_push_py = min(times["push_ours"]), min(times["push_py"])
            t_pull_ours, t_pull_py = min(times["pull_ours"]), min(times["pull_py"])
            print("all times (s):", json.dumps(times))
        finally:
            server.stop()
    mib = args.size_mib
    print(f"push {mib} MiB: sla-ckpt {t_push_ours:.2f} s, huggingface_hub {t_push_py:.2f} s, ratio {t_push_ours / t_push_py:.2f}")
    print(f"pull {mib} MiB: sla-ckpt {t_pull_ours:.2f} s, huggingface_hub {t_pull_py:.2f} s, ratio {t_pull_ours / t_pull_py:.2f}")
    print(json.dumps({"size_mib": mib, "push_ours_s": t_push_ours, "push_python_s": t_push_py,
                      "pull_ours_s": t_pull_ours, "pull_python_s": t_pull_py}))


if __name__ == "__main__":
    main()
