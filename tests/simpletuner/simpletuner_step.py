"""One SimpleTuner training step with --attention_mechanism=sla, run by SimpleTuner's own attention
backend (simpletuner.helpers.training.attention_backend, the pinned PyPI package) in a process of its
own: SimpleTuner imports `sparse_linear_attention` (served by the drop-in, python/dropin), resumes
the SLA state from a checkpoint folder with its on_load_checkpoint, builds one module per head dim
through its scaled_dot_product_attention wrapper on bf16 queries, trains one step with the
parameters it registered in the optimizer, and saves with its on_save_checkpoint.

    python simpletuner_step.py RESUME_DIR SAVE_DIR REPORT_JSON --head-dim D [--head-dim D ...]
        [--device cpu|cuda] [--steps N] [--settings JSON]

REPORT_JSON gets what the test judges: which module class SimpleTuner built, the state each module
had after SimpleTuner applied the checkpoint (before the step), and after the step (the values that
SimpleTuner's save must hold), as a torch.save file beside it (REPORT_JSON + ".tensors.pt").

SimpleTuner runs SLA on CUDA only (`_sla_should_fallback` sends CPU queries to plain SDPA). On CPU
this script keeps every other reason SimpleTuner has for falling back and drops the device one:
SimpleTuner's own check is called with a stand-in query that reports device type "cuda".
"""
import argparse
import json
import sys
import types

import torch

parser = argparse.ArgumentParser()
parser.add_argument("resume_dir")
parser.add_argument("save_dir")
parser.add_argument("report")
parser.add_argument("--head-dim", type=int, action="append", required=True)
parser.add_argument("--device", default="cpu")
parser.add_argument("--steps", type=int, default=1)
parser.add_argument("--settings", default="")
args = parser.parse_args()

import sparse_linear_attention  # noqa: E402  (the drop-in: must resolve to sla_toolkit's class)
from simpletuner.helpers.training.attention_backend import AttentionBackendController, AttentionPhase  # noqa: E402

import sla_toolkit  # noqa: E402

controller = AttentionBackendController
if args.device == "cpu":
    simpletuner_fallback = controller._sla_should_fallback.__func__

    def fallback_except_device(cls, query, attn_mask, dropout_p, is_causal, enable_gqa):
        stand_in = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"), ndim=query.ndim, dtype=query.dtype)
        return simpletuner_fallback(cls, stand_in, attn_mask, dropout_p, is_causal, enable_gqa)

    controller._sla_should_fallback = classmethod(fallback_except_device)

# SimpleTuner's config object: --attention_mechanism sla and --sla_config as it parses them (a dict).
settings = json.loads(args.settings) if args.settings else torch.load(
    f"{args.resume_dir}/sla_attention.pt", map_location="cpu", weights_only=True)["settings"]
config = types.SimpleNamespace(attention_mechanism="sla", sla_config=dict(settings))
controller.apply(config, AttentionPhase.TRAIN)
controller.on_load_checkpoint(args.resume_dir)

device = torch.device(args.device)
torch.manual_seed(0)
# A stand-in for the transformer's attention projections: the model parameters of the optimizer.
model = torch.nn.ModuleDict({str(d): torch.nn.Linear(d, 3 * d, device=device, dtype=torch.bfloat16) for d in args.head_dim})
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
controller.bind_optimizer(optimizer)  # SimpleTuner adds each SLA module's parameters as they are built

applied, tensors = {}, {"applied": {}, "trained": {}}
loss = None
sdpa = torch.nn.functional.scaled_dot_product_attention  # SimpleTuner's wrapper, installed by apply()
for step in range(args.steps):
    optimizer.zero_grad()
    loss = 0
    for d in args.head_dim:
        heads, length = 2, 192  # three 64-row blocks
        x = torch.randn(1, length, d, device=device, dtype=torch.bfloat16)
        q, k, v = model[str(d)](x).view(1, length, 3, 1, d).expand(1, length, 3, heads, d).unbind(2)
        # diffusers hands (B, L, H, D).transpose(1, 2): (B, H, L, D) views, not contiguous
        o = sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        if step == 0:
            key = (d, q.device.type, q.device.index, torch.bfloat16)  # SimpleTuner's key: the query's device (cuda:0)
            module = controller._sla_cache.get(key)
            applied[d] = {"built": module is not None, "class": f"{type(module).__module__}.{type(module).__name__}",
                          # "" when our fused kernels run these inputs (CUDA), else the reason the reference runs
                          "kernels_why_not": sla_toolkit.kernels_why_not(*(t.transpose(1, 2) for t in (q, k, v)),
                                                                         settings["topk"], settings["blkq"], settings["blkk"])}
            if module is not None:
                tensors["applied"][f"{d}:bf16"] = {n: t.detach().cpu().clone() for n, t in module.state_dict().items()}
        loss = loss + (o.float() - x.float().unsqueeze(1)).square().mean()
    loss.backward()
    optimizer.step()

for (d, _, _, dtype), module in controller._sla_cache.items():
    tensors["trained"][f"{d}:{controller._dtype_token(dtype)}"] = {n: t.detach().cpu().clone() for n, t in module.state_dict().items()}
registered = sum(1 for g in optimizer.param_groups[1:] for _ in g["params"])
controller.on_save_checkpoint(args.save_dir)

torch.save(tensors, args.report + ".tensors.pt")
with open(args.report, "w") as f:
    json.dump({"dropin": getattr(sparse_linear_attention, "PROVIDER", None),
               "dropin_is_sla_toolkit": sparse_linear_attention.SparseLinearAttention is sla_toolkit.SparseLinearAttention,
               "modules": {str(d): a for d, a in applied.items()},
               "sla_params_in_optimizer": registered,
               "loss": None if loss is None else float(loss.detach())}, f)
sys.exit(0)
