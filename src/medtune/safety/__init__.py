"""The medical safety layer shared by data cleaning, evaluation and serving.

Red flags in questions (triage with an emergency action), dangerous advice in answers (contraindicated
drug-population pairs, exact doses, antibiotics without a doctor, dismissing an emergency, certain
diagnoses) and the disclaimer. The rules live in ``rules.yaml`` next to this file, written for clinical
review; the engine only applies them. ``medtune safety check FILE`` runs the checks on any JSONL file.
"""

from medtune.safety.engine import (
    BLOCKED_TEXT,
    DISCLAIMER,
    Finding,
    GuardedReply,
    RedFlag,
    SafetyEngine,
    SafetyReport,
    default_engine,
)
from medtune.safety.report import LabelledEval, ScreenResult, evaluate_labelled, safety_metrics, screen_pairs
from medtune.safety.rules import RulesError, RuleSet, load_rules

__all__ = [
    "BLOCKED_TEXT",
    "DISCLAIMER",
    "Finding",
    "GuardedReply",
    "LabelledEval",
    "RedFlag",
    "RuleSet",
    "RulesError",
    "SafetyEngine",
    "SafetyReport",
    "ScreenResult",
    "default_engine",
    "evaluate_labelled",
    "load_rules",
    "safety_metrics",
    "screen_pairs",
]
