"""Remediation: actions, policy, guardrails, executor with journal, verification, escalation, backends. Not
built yet: the package holds nothing else (README, "What `make demo` shows": not built yet)."""
