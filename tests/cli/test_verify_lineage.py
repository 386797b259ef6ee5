"""verify: a file without our extension key inherits the record of the run it descends from (issue 17,
part 2; the real SimpleTuner save is in tests/simpletuner). What counts as descent, on files written
the way SimpleTuner writes them (torch.save): an earlier checkpoint-<M> of the same run with the same
settings and every one of its entries present with the same shapes; never a later checkpoint, one
with other settings or other entries, or a file in another run."""
import torch

from conftest import DEFAULT_SETTINGS, messages, simpletuner_checkpoint, statuses, trained_entry, verify_json

RECORD = {"variant": "complement", "writer": "sla-toolkit test"}


def resaved(run, step, source_step, changed=True, settings=None, extra_keys=()):
    """checkpoint-<step> as SimpleTuner saves it after resuming from checkpoint-<source_step>."""
    src = torch.load(run / f"checkpoint-{source_step}" / "sla_attention.pt", weights_only=True)
    state = {k: {n: (t + 0.001 if changed else t) for n, t in e.items()} for k, e in src["state"].items()}
    for key in extra_keys:
        state[key] = trained_entry(int(key.split(":")[0]), seed=9)
    return simpletuner_checkpoint(run, step, state=state, settings=settings or src["settings"])


def test_inherits_from_the_newest_earlier_record(tmp_path):
    run = tmp_path / "output"
    simpletuner_checkpoint(run, 100, extension=dict(RECORD, variant="all"))
    simpletuner_checkpoint(run, 200, extension=RECORD)
    ck = resaved(run, 300, 200, extra_keys=["32:bf16"])  # SimpleTuner also adds entries it built since
    code, report = verify_json(ck, "--strict")
    assert code == 0, report
    assert "variant 'complement' inherited" in messages(report, "variant") and "checkpoint-200" in messages(report, "variant")
    assert "descends from" in messages(report, "provenance") and "sla-toolkit test" in messages(report, "provenance")


def test_never_from_a_later_checkpoint_other_settings_or_other_entries(tmp_path):
    run = tmp_path / "output"
    simpletuner_checkpoint(run, 100)  # no record itself
    simpletuner_checkpoint(run, 200, extension=RECORD)
    code, report = verify_json(run / "checkpoint-100", "--strict")
    assert code == 1 and statuses(report, "variant") == ["warn"] and "unknown" in messages(report, "variant")

    ck = resaved(run, 300, 200, settings=dict(DEFAULT_SETTINGS, topk=0.1))
    _, report = verify_json(ck)
    assert "unknown" in messages(report, "variant")

    other = simpletuner_checkpoint(run, 400, state={"64:fp16": trained_entry(64)})  # not the recorded entry
    _, report = verify_json(other)
    assert "unknown" in messages(report, "variant")


def test_regenerated_origin_survives(tmp_path):
    run = tmp_path / "output"
    simpletuner_checkpoint(run, 100, extension={"variant": "all", "regenerated": True, "regenerated_from": "dense attention"})
    same = resaved(run, 200, 100, changed=False)
    code, report = verify_json(same, "--strict")
    assert code == 1 and statuses(report, "provenance") == ["warn"]
    assert "regenerated" in messages(report, "provenance") and "same values" in messages(report, "provenance")
    trained = resaved(run, 300, 100)
    code, report = verify_json(trained, "--strict")
    assert code == 0 and "trained further from a regenerated start" in messages(report, "provenance")


def test_a_file_that_records_itself_is_judged_by_its_own_record(tmp_path):
    run = tmp_path / "output"
    simpletuner_checkpoint(run, 100, extension=RECORD)
    ck = simpletuner_checkpoint(run, 200, extension={"variant": "all"})
    _, report = verify_json(ck)
    assert "variant 'all' recorded" in messages(report, "variant")
