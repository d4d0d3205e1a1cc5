"""Remediation: actions, policy, guardrails, executor with journal, verification, escalation, backends."""
