#!/usr/bin/env bash
# The main job, end to end, on the embedded default (a local Hub-compatible server on loopback):
#   install -> build -> train the example DiT with SLA (CPU) -> inspect and verify its
#   sla_attention.pt -> load it in Python torch.load(weights_only=True) -> push the checkpoint to
#   the local Hub -> pull it into a fresh folder -> verify the pulled copy.
# Everything it writes goes under demo-out/ (or $SLA_DEMO_DIR).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tools/setup.sh"
build="${SLA_BUILD_DIR:-$root/build}"
SLA_BUILD_DIR="$build" bash "$root/tools/build.sh"

out="${SLA_DEMO_DIR:-$root/demo-out}"
rm -rf "$out"
mkdir -p "$out"
ckpt_tool="$build/tools/sla_ckpt/sla-ckpt"
python="$root/.venv/bin/python"
step() { printf '\n==> %s\n' "$*" >&2; }

# Blocks 64/64 (or 128/64): settings every consumer runs; the public implementation that SimpleTuner
# uses asserts blkq in {64, 128} and blkk == 64 and falls back to dense attention otherwise. Our kernels
# also run 32/32 (SLA_DEMO_BLOCK=32; verify then warns). The example writes "<D>:bf16" entries too
# (--state-dtype auto), the ones SimpleTuner looks up.
blkq="${SLA_DEMO_BLOCK:-64}"
blkk="${SLA_DEMO_BLOCK:-64}"
step "train the example DiT with SLA on CPU (blocks $blkq/$blkk)"
"$build/examples/sla-dit-example" --output-dir "$out/run" --steps 40 --checkpoint-every 20 \
  --attention-mechanism sla --state-dtype auto \
  --sla-config "{'topk': 0.25, 'blkq': $blkq, 'blkk': $blkk}" >"$out/losses.jsonl"
ckpt="$(ls -d "$out"/run/checkpoint-* | sort -t- -k2 -n | tail -1)"

step "inspect $ckpt/sla_attention.pt"
"$ckpt_tool" inspect "$ckpt/sla_attention.pt"

step "load it in Python torch.load(weights_only=True)"
"$python" - "$ckpt/sla_attention.pt" <<'PY'
import sys, torch
payload = torch.load(sys.argv[1], weights_only=True)
print("python sees:", sorted(payload), "state keys:", sorted(payload["state"]))
PY

step "verify the checkpoint folder"
"$ckpt_tool" verify "$ckpt"

step "start the local Hub server on loopback"
"$ckpt_tool" hub serve --root "$out/hub" --port 0 --port-file "$out/hub.port" 2>"$out/hub.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -s "$out/hub.port" ]] && break; sleep 0.1; done
export HF_ENDPOINT="http://127.0.0.1:$(cat "$out/hub.port")" HF_TOKEN=demo-token HF_HOME="$out/hf-home"

step "push $ckpt to $HF_ENDPOINT as demo/sla-dit"
"$ckpt_tool" push "$ckpt" demo/sla-dit --message "SLA demo checkpoint"

step "pull demo/sla-dit into a fresh folder and verify it"
"$ckpt_tool" pull demo/sla-dit --local-dir "$out/pulled"
"$ckpt_tool" verify "$out/pulled"
cmp "$ckpt/sla_attention.pt" "$out/pulled/sla_attention.pt"
step "done: sla_attention.pt travelled to the Hub and back intact"
