"""Notifiers: Slack (Block Kit, threads, charts), a generic webhook, and a local Slack API recorder."""
