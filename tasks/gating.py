"""Training stage 6: the gate against the champion (fail closed) and promotion under the champion lock."""

import time
from datetime import datetime

import mlflow.pyfunc
import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from anomaly_distill.config import GateConfig
from anomaly_distill.data import (
    DataError,
    Table,
    check_labels,
)
from anomaly_distill.gate import Verdict, absolute_checks, decide, held
from anomaly_distill.metrics import detection_metrics, has_both_classes, labelled_count
from stores import registry
from stores.registry import REFERENCE_FILE
from tasks import tracking
from tasks.common import IO_RETRIES, REFERENCE_LABEL

CHAMPION_ATTEMPTS = 3  # loading/scoring the champion: transient artifact-store errors get two more tries
CHAMPION_BACKOFF_SECONDS = 2  # times the attempt number: 2 s, then 4 s


class ChampionUnavailable(RuntimeError):
    """The champion could not be loaded or scored: the gate cannot compare, so it does not promote."""


def version_metrics(model_name: str, version: str, rows) -> dict:
    """A registered version's AUROC and AUPRC on the gate rows (none: one class there); raises ChampionUnavailable."""
    for attempt in range(1, CHAMPION_ATTEMPTS + 1):
        try:
            scores, labels = _version_scores(model_name, registry.get_version(model_name, version), rows)
            break
        except registry.RegistryUnreachable:
            raise
        except Exception as error:
            if attempt == CHAMPION_ATTEMPTS or isinstance(error, DataError):  # refused rows: a retry cannot help
                raise ChampionUnavailable(
                    f"champion v{version} could not be loaded or scored on the gate rows "
                    f"({'after ' + str(attempt) + ' attempts, ' if attempt > 1 else ''}{type(error).__name__}: "
                    f"{str(error)[:300]})"
                ) from error
            time.sleep(CHAMPION_BACKOFF_SECONDS * attempt)
    return {"version": str(version), **ranking_metrics(labels, scores)}


def ranking_metrics(labels, scores) -> dict:
    """AUROC and AUPRC on the labelled rows; none when they do not hold both classes."""
    if not has_both_classes(labels):
        return {}
    metrics = detection_metrics(labels, scores, float("inf"))
    return {"auroc": metrics["auroc"], "auprc": metrics["auprc"]}


def _version_scores(model_name: str, version, rows) -> tuple[np.ndarray, np.ndarray | None]:
    # Not the alias: it may move. No requirement check: scanning every installed package's metadata takes ~0.4 s,
    # and a champion that cannot load or score here fails the gate closed anyway.
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}", suppress_warnings=True)
    if hasattr(rows, "champion_scores"):  # a series: scored by timestamp with the champion's own window
        return rows.champion_scores(model, registry.load_contract(version.run_id))
    return model.predict(rows.scoring_frame())["score"].to_numpy(), rows.labels


def labelled_reference(champion, rows) -> Table | str:
    """The champion's reference snapshot (its training rows) as gate rows, or why it cannot be (tables only)."""
    if not isinstance(rows, Table):
        return "comparing on the champion's reference snapshot is available for tables only"
    snapshot = tracking.load_parquet_artifact(champion.run_id, REFERENCE_FILE)
    labels = check_labels(snapshot[REFERENCE_LABEL]) if REFERENCE_LABEL in snapshot.columns else None
    if not has_both_classes(labels):
        return f"champion v{champion.version}'s reference snapshot has no labels of both classes either"
    columns = list(rows.scoring_frame().columns)
    if not set(columns) <= set(snapshot.columns):
        return f"champion v{champion.version}'s reference snapshot has other columns"
    return Table(snapshot[columns], labels)


def gate_verdict(challenger: dict, model_name: str, rows, config: GateConfig, student=None) -> Verdict:
    """Challenger against the champion and the best champion since a person's choice, on the same rows. Fails
    closed: a champion that cannot be scored means no promotion; an unreadable registry stops the run."""
    champion = registry.version_by_alias(model_name, registry.CHAMPION)  # RegistryUnreachable is not "none"
    if champion is None:
        return decide(challenger, None, config)
    evidence = "the held-out rows"
    if "auroc" not in challenger and config.unlabelled != "fidelity_only":
        if config.unlabelled == "hold":
            return held(challenger, config, str(champion.version), "no labels in this run (gate.unlabelled: hold)")
        reference = labelled_reference(champion, rows)
        if isinstance(reference, str):
            return held(challenger, config, str(champion.version), f"no labels in this run, and {reference}")
        challenger = {**challenger, **_candidate_metrics(student, reference)}
        rows = reference
        evidence = (
            f"champion v{champion.version}'s labelled reference snapshot ({labelled_rows(reference.labels)} of "
            "its training rows, as this run's held-out rows lack labels of both classes; the champion learnt from "
            "them, so they favour it)"
        )
    elif "auroc" in challenger and isinstance(rows, Table):
        evidence = f"the held-out rows ({labelled_rows(rows.labels)})"
    return _compared(challenger, model_name, champion, rows, config, evidence)


def _candidate_metrics(student, rows: Table) -> dict:
    return ranking_metrics(rows.labels, student.predict(rows.scoring_frame())["score"].to_numpy())


def labelled_rows(labels) -> str:
    """How many labelled rows a comparison rests on, e.g. "412 labelled of 1,130: 12 anomalies"."""
    labels = np.asarray(labels)
    return f"{labelled_count(labels):,} labelled of {len(labels):,}: {int((labels == 1).sum()):,} anomalies"


def _compared(challenger, model_name, champion, rows, config, evidence) -> Verdict:
    best = registry.best_champion(model_name)
    try:
        measured = {str(champion.version): version_metrics(model_name, str(champion.version), rows)}
        if best is not None and best not in measured:
            measured[best] = version_metrics(model_name, best, rows)
    except ChampionUnavailable as error:
        checks = [text for _, text in absolute_checks(challenger, config)]
        return Verdict(False, [*checks, f"FAIL: {error}; not promoting without the comparison"], str(champion.version))
    champion_metrics = measured[str(champion.version)]
    return decide(challenger, champion_metrics, config, measured.get(best), evidence)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def gate(challenger: dict, model_name: str, rows, config: GateConfig, student=None) -> Verdict:
    return gate_verdict(challenger, model_name, rows, config, student)


def person_decision(model_name: str, version: str, started_at: datetime) -> str | None:
    """Why a person's decision (or an earlier replacement) forbids this run's promotion, or None."""
    demoted = registry.get_version(model_name, version).tags.get(registry.DEMOTED_TAG)
    if demoted:
        return f"v{version} was {demoted}; it becomes champion again only by a person (anomaly-distill promote)"
    champion = registry.version_by_alias(model_name, registry.CHAMPION)
    is_champion = champion is not None and str(champion.version) == version
    if not is_champion and version in registry.champion_history(model_name):
        return (
            f"v{version} was champion before and was replaced; a run never brings back an earlier champion "
            "(a person can: anomaly-distill promote)"
        )
    by, when = registry.last_move(model_name)
    if by == registry.PERSON and when is not None and when > started_at:
        return (
            f"a person moved the champion at {when:%Y-%m-%d %H:%M:%S} UTC, after this run started "
            f"({started_at:%H:%M:%S} UTC); a run does not overturn a later decision of a person"
        )
    return None


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def promote(
    model_name: str,
    version: str,
    verdict: Verdict,
    challenger: dict,
    rows,
    config: GateConfig,
    started_at: datetime,
    student=None,
) -> tuple[str | None, Verdict]:
    """Gate-then-promote, atomic with respect to the champion: under the champion lock, a champion that moved
    since the gate is gated against again, and a person's decision (a demotion, a later promotion) stands.
    Returns (previous champion if it moved, the final verdict), which is published and tagged on the version."""
    previous = None
    if verdict.promote:
        with registry.champion_lock(model_name):
            verdict, previous = _promote_locked(
                model_name, version, verdict, challenger, rows, config, started_at, student
            )
    registry.set_version_tags(
        model_name, version, {"gate": verdict.outcome, "gate_reasons": "\n".join(verdict.reasons)}
    )  # a reused version gets this run's verdict
    return previous, verdict


def _promote_locked(model_name, version, verdict, challenger, rows, config, started_at, student):
    registry.notice_outside_moves(model_name)
    refusal = person_decision(model_name, version, started_at)
    if refusal:
        return verdict.refused(refusal), None
    current = registry.version_by_alias(model_name, registry.CHAMPION)
    current = None if current is None else str(current.version)
    if current != verdict.champion_version:
        moved = f"note: the champion moved from v{verdict.champion_version} to v{current} during this run; gated again"
        verdict = gate_verdict(challenger, model_name, rows, config, student)
        verdict.reasons.append(moved)
        if not verdict.promote:
            return verdict, None
    reason = "gate passed: " + "; ".join(verdict.reasons)
    return verdict, registry.move_champion(model_name, version, reason, registry.PIPELINE, verdict.new_best)
