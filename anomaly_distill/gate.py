"""The promotion gate: pure decision logic over metrics, so it is the same in flows, CLI and tests."""

from dataclasses import dataclass, field

from anomaly_distill.config import GateConfig


@dataclass
class Verdict:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    champion_version: str | None = None  # the champion the challenger was compared with (None: there was none)
    champion_metrics: dict[str, float] | None = None  # its metrics on the same held-out rows

    def refused(self, reason: str) -> "Verdict":
        """The same checks, overruled: the challenger does not become champion, and this says why."""
        return Verdict(False, [*self.reasons, f"NOT PROMOTED: {reason}"], self.champion_version, self.champion_metrics)

    def markdown(self, title: str) -> str:
        lines = [f"# {title}", "", f"**Verdict: {'PROMOTE' if self.promote else 'KEEP CHAMPION'}**", ""]
        return "\n".join(lines + [f"- {reason}" for reason in self.reasons])


def _check(ok: bool, text: str) -> tuple[bool, str]:
    return ok, f"{'pass' if ok else 'FAIL'}: {text}"


def _speed_check(challenger: dict[str, float], config: GateConfig) -> tuple[bool, str]:
    if "images_per_second" in challenger:
        rate, least = challenger["images_per_second"], config.min_images_per_second
        return _check(rate >= least, f"scoring {rate:,.0f} images/s >= {least:,.0f}")
    rate, least = challenger["rows_per_second"], config.min_rows_per_second
    return _check(rate >= least, f"scoring {rate:,.0f} rows/s >= {least:,.0f}")


def decide(challenger: dict[str, float], champion: dict[str, float] | None, config: GateConfig) -> Verdict:
    """`challenger`/`champion` hold metrics on the same held-out rows (auroc may be absent without labels)."""
    checks = [
        _check(
            challenger["fidelity"] >= config.min_fidelity,
            f"fidelity {challenger['fidelity']:.4f} >= {config.min_fidelity}",
        ),
        _check(
            challenger["size_bytes"] <= config.max_size_bytes,
            f"size {challenger['size_bytes']:,} B <= {config.max_size_bytes:,} B",
        ),
        _speed_check(challenger, config),
    ]
    if "auroc" in challenger:
        checks.append(
            _check(
                challenger["auroc"] >= config.min_auroc,
                f"AUROC {challenger['auroc']:.4f} >= minimum {config.min_auroc}",
            )
        )
        if champion is not None and "auroc" in champion:
            floor = champion["auroc"] - config.auroc_tolerance
            checks.append(
                _check(
                    challenger["auroc"] >= floor,
                    f"AUROC {challenger['auroc']:.4f} >= champion {champion['auroc']:.4f} "
                    f"- {config.auroc_tolerance} = {floor:.4f}",
                )
            )
    else:
        checks.append((True, "note: no labels in the evaluation rows, AUROC checks skipped"))
    if champion is None:
        checks.append((True, "note: no champion yet, absolute checks only"))
    return Verdict(all(ok for ok, _ in checks), [text for _, text in checks])
