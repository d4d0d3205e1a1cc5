"""HTTP API of `gpuwarden serve` (composition root)."""
