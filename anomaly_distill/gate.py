"""The promotion gate: pure decision logic over metrics, so it is the same in flows, CLI and tests."""

from dataclasses import dataclass, field

from anomaly_distill.config import GateConfig


@dataclass
class Verdict:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    champion_version: str | None = None  # the champion the challenger was compared with (None: there was none)
    champion_metrics: dict[str, float] | None = None  # its metrics on the same rows
    evidence: str = "the held-out rows"  # the rows every AUROC/AUPRC in the verdict was measured on
    new_best: bool = False  # the challenger beat the best champion since a person's choice: it becomes that mark
    held: bool = False  # unlabelled and gate.unlabelled = hold: left as challenger for a person

    def refused(self, reason: str) -> "Verdict":
        """The same checks, overruled: the challenger does not become champion, and this says why."""
        return Verdict(
            False,
            [*self.reasons, f"NOT PROMOTED: {reason}"],
            self.champion_version,
            self.champion_metrics,
            self.evidence,
        )

    @property
    def outcome(self) -> str:
        return "held" if self.held else "passed" if self.promote else "failed"

    def markdown(self, title: str) -> str:
        verdict = "HOLD FOR A PERSON" if self.held else "PROMOTE" if self.promote else "KEEP CHAMPION"
        lines = [f"# {title}", "", f"**Verdict: {verdict}**", "", f"Evidence: {self.evidence}.", ""]
        return "\n".join(lines + [f"- {reason}" for reason in self.reasons])


def _check(ok: bool, text: str) -> tuple[bool, str]:
    return ok, f"{'pass' if ok else 'FAIL'}: {text}"


def _speed_check(challenger: dict[str, float], config: GateConfig) -> tuple[bool, str]:
    if "images_per_second" in challenger:
        rate, least = challenger["images_per_second"], config.min_images_per_second
        return _check(rate >= least, f"scoring {rate:,.0f} images/s >= {least:,.0f}")
    rate, least = challenger["rows_per_second"], config.min_rows_per_second
    return _check(rate >= least, f"scoring {rate:,.0f} rows/s >= {least:,.0f}")


def _fidelity_check(challenger: dict[str, float], config: GateConfig) -> tuple[bool, str]:
    if "images_per_second" in challenger and {"auroc", "teacher_auroc"} <= set(challenger):
        auroc, least = challenger["auroc"], challenger["teacher_auroc"] - config.image_auroc_fidelity
        return _check(
            auroc >= least,
            f"fidelity: student AUROC {auroc:.4f} >= teacher's {challenger['teacher_auroc']:.4f} - "
            f"{config.image_auroc_fidelity} (rank agreement {challenger['fidelity']:.2f}, not checked for images)",
        )
    fidelity = challenger["fidelity"]
    return _check(fidelity >= config.min_fidelity, f"fidelity {fidelity:.4f} >= {config.min_fidelity}")


def absolute_checks(challenger: dict[str, float], config: GateConfig) -> list[tuple[bool, str]]:
    """What the challenger must meet on its own: fidelity, size, speed (and the AUROC floor, with labels)."""
    checks = [
        _fidelity_check(challenger, config),
        _check(
            challenger["size_bytes"] <= config.max_size_bytes,
            f"size {challenger['size_bytes']:,} B <= {config.max_size_bytes:,} B",
        ),
        _speed_check(challenger, config),
    ]
    if "auroc" in challenger:
        auroc = challenger["auroc"]
        checks.append(_check(auroc >= config.min_auroc, f"AUROC {auroc:.4f} >= minimum {config.min_auroc}"))
    return checks


TOLERANCES = {"auroc": "auroc_tolerance", "auprc": "auprc_tolerance"}


def _versus(challenger: dict, other: dict, who: str, config: GateConfig) -> list[tuple[bool, str]]:
    """AUROC, and AUPRC where both have it, against `other` less the metric's tolerance."""
    checks = []
    for metric, setting in TOLERANCES.items():
        if metric not in challenger or metric not in other:
            continue
        tolerance = getattr(config, setting)
        value, floor = challenger[metric], other[metric] - tolerance
        text = (
            f"{metric.upper()} {value:.4f} >= {who} v{other['version']} {other[metric]:.4f} - {tolerance} = {floor:.4f}"
        )
        checks.append(_check(value >= floor, text))
    return checks


def decide(
    challenger: dict[str, float],
    champion: dict | None,
    config: GateConfig,
    best: dict | None = None,
    evidence: str = "the held-out rows",
) -> Verdict:
    """`challenger`, `champion` and `best` hold metrics on the same rows (`evidence`); auroc may be absent without
    labels. `best` is the best champion since a person last chose one: measured against it too, the quality the
    pipeline may give up is bounded by the tolerance in total, not per promotion (no ratchet down)."""
    checks = absolute_checks(challenger, config)
    new_best = best is None
    if "auroc" in challenger:
        if champion is not None and "auroc" in champion:
            checks += _versus(challenger, champion, "champion", config)
        if best is not None and "auroc" in best and (champion is None or best["version"] != champion["version"]):
            checks += _versus(challenger, best, "best champion since a person's choice,", config)
        new_best = best is None or "auroc" not in best or challenger["auroc"] > best["auroc"]
        if champion is not None:
            checks.append((True, f"note: every AUROC and AUPRC here is measured on {evidence}"))
    else:
        checks.append((True, "note: no labels in the evaluation rows, AUROC checks skipped"))
    if champion is None:
        checks.append((True, "note: no champion yet, absolute checks only"))
    return Verdict(
        all(ok for ok, _ in checks),
        [text for _, text in checks],
        None if champion is None else str(champion["version"]),
        None if champion is None else {k: v for k, v in champion.items() if k != "version"},
        evidence,
        new_best,
    )


def held(challenger: dict[str, float], config: GateConfig, champion_version: str, why: str) -> Verdict:
    """An unlabelled challenger with no comparison to rest on: registered as `challenger`, a person decides."""
    checks = [text for _, text in absolute_checks(challenger, config)]
    return Verdict(
        False,
        [*checks, f"HOLD: {why}; left as challenger for a person (anomaly-distill promote --version …)"],
        champion_version,
        evidence="none with labels",
        held=True,
    )
