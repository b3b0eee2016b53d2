"""The promotion gate's decision: absolute checks, the champion, and the best champion since a person's choice."""

from anomaly_distill.config import GateConfig
from anomaly_distill.gate import decide, held

FAST = {"fidelity": 0.97, "size_bytes": 10_000, "rows_per_second": 1e6}


def nightly_promotions(aurocs: list[float], compare_with_best: bool) -> list[bool]:
    """Candidates gated one per night against the registry state the promotions leave behind."""
    champion = best = None
    promoted = []
    for version, auroc in enumerate(aurocs, start=1):
        verdict = decide({**FAST, "auroc": auroc}, champion, GateConfig(), best if compare_with_best else None)
        promoted.append(verdict.promote)
        if verdict.promote:
            champion = {"version": str(version), "auroc": auroc}
            best = champion if verdict.new_best else best
    return promoted


def test_five_candidates_each_slightly_worse_stop_at_the_third():
    aurocs = [0.9 - 0.008 * night for night in range(5)]
    assert nightly_promotions(aurocs, compare_with_best=True) == [True, True, False, False, False]
    assert nightly_promotions(aurocs, compare_with_best=False) == [True] * 5  # the ratchet this guards against


def test_a_better_candidate_becomes_the_mark_and_the_verdict_names_both_comparisons():
    champion, best = {"version": "3", "auroc": 0.88}, {"version": "2", "auroc": 0.90}
    verdict = decide({**FAST, "auroc": 0.885}, champion, GateConfig(), best, "the held-out rows")
    assert not verdict.promote and not verdict.new_best
    assert "pass: AUROC 0.8850 >= champion v3 0.8800 - 0.01 = 0.8700" in verdict.reasons
    assert "FAIL: AUROC 0.8850 >= best champion since a person's choice, v2 0.9000 - 0.01 = 0.8900" in verdict.reasons
    assert decide({**FAST, "auroc": 0.91}, champion, GateConfig(), best).new_best


def test_without_labels_the_held_verdict_leaves_the_decision_to_a_person():
    verdict = held(FAST, GateConfig(), "4", "no labels in this run (gate.unlabelled: hold)")
    assert not verdict.promote and verdict.outcome == "held" and verdict.champion_version == "4"
    assert verdict.reasons[-1].startswith("HOLD: no labels in this run")
    assert "HOLD FOR A PERSON" in verdict.markdown("t")
    assert decide(FAST, {"version": "4"}, GateConfig()).promote  # fidelity_only: what the policy replaces


def test_an_image_students_fidelity_is_its_auroc_against_its_teachers_when_both_classes_are_held_out():
    image = {"fidelity": 0.45, "size_bytes": 10_000, "images_per_second": 5_000, "auroc": 0.985}
    within = decide({**image, "teacher_auroc": 0.999}, None, GateConfig())
    assert within.promote
    assert any(r.startswith("pass: fidelity: student AUROC 0.9850 >= teacher's 0.9990 - 0.02") for r in within.reasons)
    assert not decide({**image, "teacher_auroc": 0.999, "auroc": 0.97}, None, GateConfig()).promote
    unlabelled = {k: v for k, v in image.items() if k != "auroc"}  # one class held out: the rank agreement decides
    assert "FAIL: fidelity 0.4500 >= 0.9" in decide(unlabelled, None, GateConfig()).reasons
