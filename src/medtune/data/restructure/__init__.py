"""Teacher-LLM restructuring of raw answers into 病情分析 / 原因分析 / 治疗建议 (``medtune data restructure``).

client.py (openai client, limits, retries) -> gate.py (structure + faithfulness) -> journal.py (resume) ->
runner.py (one run, outputs); offline.py is the rule-based restructurer used without any endpoint.
"""

from medtune.data.restructure.runner import RestructureError, RestructureSummary, output_dir, run_restructure

__all__ = ["RestructureError", "RestructureSummary", "output_dir", "run_restructure"]
