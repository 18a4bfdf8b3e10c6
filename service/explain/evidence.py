"""Proxy evidence -> verdicts and readable reasoning (the embedded default explanation source).

This is model-derived evidence, NOT free-form generation: every sentence is rendered from the proxy reward
model's own outputs (dimension heads and per-criterion heads), position-debiased exactly like /v1/pair,
so an explanation can never contradict the score the fast path returns for the same pair.

Tie band: a verdict is "tie" when |P(A>B) - 0.5| < TIE_BAND (default 0.05, i.e. 45%..55%). Below that
margin the proxy's order disagreement and calibration error on held-out pairs are of the same size, so
calling a winner would be noise.

What the model cannot know is not claimed (README.md "Out of distribution and wording"): when either video's
novelty exceeds the threshold, criterion verdicts are withheld and the text says the videos are unlike the
training material; "clearly" needs a calibrated probability >= 0.8 (|P - 0.5| >= 0.3), so an uncalibrated
(1.x) head's 0.99 never reads as "clearly better".
"""

from __future__ import annotations

import numpy as np

from service.engine import aggregate
from service.contract import ModelContract
from service.engine.responses import novelty_info
from service.explain.schemas import CriterionVerdict, ExplainModel, ExplainResult, ReasoningSection, Verdict
from service.schemas import Novelty

TIE_BAND = 0.05
CLEARLY, SOMEWHAT = 0.8, 0.65  # confidence (calibrated probability of the named side) for the strength words
DIMENSION_NAMES = {"VA": "Visual Aesthetics", "VF": "Visual Fidelity", "VP": "Visual Plausibility"}
PROXY_DISCLAIMER = (
    "Model-derived evidence: verdicts and text are rendered from the proxy reward model's dimension and "
    "criterion heads (debiased over both presentation orders). No free-form generation is involved; the "
    "text restates what the heads say, it does not add observations of its own.")


def verdict(p_a: float, disagreement: float | None = None, tie_band: float = TIE_BAND) -> Verdict:
    """A/B/tie from P(A>B) with the documented tie band and confidence definition (see Verdict)."""
    p = float(np.clip(p_a, 0.0, 1.0))
    margin = abs(p - 0.5)
    if margin < tie_band:
        side, conf = "tie", 1.0 - margin / tie_band
    elif p > 0.5:
        side, conf = "A", p
    else:
        side, conf = "B", 1.0 - p
    dis = None if disagreement is None else float(disagreement)
    return Verdict(verdict=side, confidence=float(np.clip(conf, 0, 1)), p_a=p, order_disagreement=dis)


def _humanize(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip()


def strength(confidence: float, calibrated: bool) -> str:
    """The adverb of a verdict. Only a calibrated probability far from 0.5 earns "clearly": an uncalibrated
    head's sigmoid is not a probability (1.1.0 gives 0.99 on criteria an edit did not touch)."""
    if calibrated and confidence >= CLEARLY:
        return "clearly"
    return "somewhat" if confidence >= SOMEWHAT else "slightly"


def withheld(v: Verdict) -> Verdict:
    """The same head output with the verdict withheld (out of distribution): confidence 0, p_a kept."""
    return v.model_copy(update={"verdict": "withheld", "confidence": 0.0})


def _sentence(name: str, v: Verdict, calibrated: bool = True) -> str:
    what = _humanize(name)
    bias = ""
    if v.order_disagreement is not None and v.order_disagreement > 0.1:
        bias = f" The two presentation orders disagree by {v.order_disagreement:.2f}, so treat this as weak."
    if v.verdict == "withheld":
        return (f"On {what}, no verdict: the videos are unlike the material the model was trained on, so its "
                f"criterion head (raw P(A>B) = {v.p_a:.2f}) is extrapolating, not judging.")
    if v.verdict == "tie":
        return (f"On {what}, the model sees no meaningful difference (P(A>B) = {v.p_a:.2f}, inside the "
                f"±{TIE_BAND:.2f} tie band).{bias}")
    winner, loser = ("A", "B") if v.verdict == "A" else ("B", "A")
    conf = f"confidence {v.confidence:.2f}" if calibrated else "uncalibrated score"
    return (f"On {what}, video {winner} is {strength(v.confidence, calibrated)} better than video {loser} "
            f"(P(A>B) = {v.p_a:.2f}, {conf}).{bias}")


def proxy_explanation(contract: ModelContract, backend_name: str, ab: np.ndarray, ba: np.ndarray | None,
                      crit_ab: np.ndarray | None, crit_ba: np.ndarray | None,
                      weights: tuple[float, ...], tie_band: float = TIE_BAND,
                      novelty: np.ndarray | None = None) -> ExplainResult:
    """Build the structured result from one pair's logits (the same numbers /v1/pair aggregates) and the
    two videos' novelty [2] (None when the model gives none)."""
    nov = novelty_info(novelty)
    ood = nov is not None and not nov.in_distribution
    dims, dis = aggregate.debias(ab, ba)
    dim_v = {name: verdict(float(aggregate.sigmoid(dims[k])), None if dis is None else dis[k], tie_band)
             for k, name in enumerate(contract.dimensions)}
    overall = verdict(float(aggregate.sigmoid(aggregate.overall(dims, weights))),
                      None if dis is None else float(dis.max()), tie_band)
    crits: list[CriterionVerdict] = []
    if crit_ab is not None and contract.criteria:
        cl, cdis = aggregate.debias(crit_ab, crit_ba)
        owners = contract.criterion_dimension or ("",) * len(contract.criteria)
        for k, (name, dim) in enumerate(zip(contract.criteria, owners)):
            v = verdict(float(aggregate.sigmoid(cl[k])), None if cdis is None else cdis[k], tie_band)
            crits.append(CriterionVerdict(name=name, dimension=dim, **(withheld(v) if ood else v).model_dump()))
    sections = reasoning_sections(contract.dimensions, dim_v, crits, contract.calibrated, ood)
    return ExplainResult(
        source="proxy_heads", disclaimer=PROXY_DISCLAIMER, overall=overall, dimensions=dim_v, criteria=crits,
        reasoning=render(sections, overall, trained=contract.trained, novelty=nov, has_signal=contract.novelty),
        sections=sections, tie_band=tie_band, novelty=nov,
        model=ExplainModel(id=contract.model_id, version=contract.model_version, checkpoint=contract.checkpoint,
                           trained=contract.trained, backend=backend_name))


def reasoning_sections(dimensions, dim_v: dict[str, Verdict], crits: list[CriterionVerdict],
                       calibrated: bool = True, ood: bool = False) -> list[ReasoningSection]:
    """One section per criterion, grouped under its dimension; a dimension without criteria gets one.
    Out of distribution, each dimension head says its verdict is extrapolation (low trust)."""
    out: list[ReasoningSection] = []
    for dim in dimensions:
        mine = [c for c in crits if c.dimension == dim]
        title = f"{dim} ({DIMENSION_NAMES.get(dim, dim)})"
        dv = dim_v[dim]
        head = f"{title}: verdict {dv.verdict} (P(A>B) = {dv.p_a:.2f}, confidence {dv.confidence:.2f})."
        if ood:
            head += " Out of distribution: extrapolation, low trust."
        if not mine:
            out.append(ReasoningSection(criterion=dim, dimension=dim,
                                        text=f"{head} {_sentence(title, dv, calibrated)}"))
            continue
        for n, c in enumerate(mine):
            text = _sentence(c.name, c, calibrated)
            out.append(ReasoningSection(criterion=c.name, dimension=dim,
                                        text=f"{head}\n- {text}" if n == 0 else f"- {text}"))
    for c in crits:  # criteria of an unknown dimension are never dropped silently
        if c.dimension not in dimensions:
            out.append(ReasoningSection(criterion=c.name, dimension=c.dimension,
                                        text=f"- {_sentence(c.name, c, calibrated)}"))
    return out


def render(sections: list[ReasoningSection], overall: Verdict, trained: bool = True,
           novelty: Novelty | None = None, has_signal: bool = True) -> str:
    lines = ["[model-derived evidence from the proxy's criterion heads; not free-form generation]"]
    if not trained:
        lines.append("[WARNING: untrained proxy weights - these verdicts are random, not a real judgement]")
    if novelty is not None and not novelty.in_distribution:
        lines.append(f"[OUT OF DISTRIBUTION: these videos are unlike the material the model was trained on "
                     f"(novelty A {novelty.a:.2f}, B {novelty.b:.2f}; above {novelty.threshold:.1f} means farther "
                     f"than 99% of its training clips). Criterion verdicts are withheld; the dimension and "
                     f"overall verdicts are extrapolation and should not be trusted.]")
    elif novelty is None and not has_signal:
        lines.append("[this model gives no out-of-distribution signal: verdicts on videos unlike its training "
                     "material are not flagged]")
    lines += [s.text for s in sections]
    who = "neither video" if overall.verdict == "tie" else f"video {overall.verdict}"
    lines.append(f"Overall: {who} is preferred (P(A>B) = {overall.p_a:.2f}, confidence {overall.confidence:.2f}).")
    return "\n".join(lines)
