#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need. Idempotent: a second run
# only checks. Debian packages through apt, Python packages into the project-local
# virtualenv .venv (LibTorch comes from the torch wheel there).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_packages=(build-essential cmake ninja-build pkg-config python3 python3-venv python3-pip
  libcurl4-openssl-dev nlohmann-json3-dev zlib1g-dev libfmt-dev catch2 libcli11-dev libssl-dev
  libcpp-httplib-dev)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# scikit-build-core: tools/test.sh installs the Python package (pip install --no-build-isolation .).
py_requirements=(torch==2.11.0 huggingface_hub==1.29.0 safetensors==0.7.0 numpy pytest scikit-build-core==0.11.6)
stamp=.venv/.requirements
want="${py_requirements[*]}"
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: creating .venv with ${want}" >&2
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q "${py_requirements[@]}" >&2
  echo "$want" > "$stamp"
fi

# install_pinned STAMP TARGET PACKAGE...: pip install --no-deps of the pinned PACKAGEs into .venv
# (TARGET empty) or into the folder TARGET (replaced), unless STAMP already names exactly them.
install_pinned() {
  local stamp=$1 target=$2
  shift 2
  [[ "$(cat "$stamp" 2>/dev/null)" == "$*" ]] && return 0
  echo "setup: installing into ${target:-.venv} (no dependencies): $*" >&2
  if [[ -n "$target" ]]; then
    rm -rf "$target"
    .venv/bin/python -m pip install -q --no-deps --target "$target" "$@" >&2
  else
    .venv/bin/python -m pip install -q --no-deps "$@" >&2
  fi
  echo "$*" > "$stamp"
}

# SimpleTuner's real attention backend for tests/simpletuner (issue 17): the pinned package without
# its training stack (--no-deps; the test imports only simpletuner.helpers.training.attention_backend),
# plus what importing that module needs, each pinned and --no-deps so nothing above is replaced.
# flit_core builds the drop-in python/dropin (pure Python) without network.
install_pinned .venv/.simpletuner "" simpletuner==3.1.6 pillow==11.3.0 accelerate==1.16.0 diffusers==0.37.1 \
  requests==2.34.2 urllib3==2.8.0 charset-normalizer==3.5.3 flit-core==4.2.0

# The newest huggingface_hub (2.x) beside the pinned 1.x, for the hub tests' second run
# (py_*_hf2): its own folder put first on PYTHONPATH, so .venv stays as above. SimpleTuner's
# diffusers needs huggingface_hub < 2, hence two versions.
install_pinned .venv/.hf2 .venv/hf2 huggingface_hub==2.5.0 httpx2==2.17.0 httpcore2==2.17.0 anyio==4.16.0 \
  h11==0.16.0 idna==3.21 click==8.5.1 filelock==4.3.2 fsspec==2026.9.0 hf-xet==1.8.0 packaging==26.4 \
  pyyaml==6.0.4 tqdm==4.70.1 truststore==0.10.5 typing-extensions==4.16.0
