"""Evaluation (L5): anonymity, recovery, robustness, utility, diversity and speed of anonymizers,
measured side by side through the same detect -> align -> anonymize -> paste-back path."""
