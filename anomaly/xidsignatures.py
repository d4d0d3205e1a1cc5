"""The XID rules of the ``signatures`` detector: each new XID, counted (gpuwarden's exporter) or on the
last-XID gauge (dcgm-exporter's), mapped through NVIDIA's XID catalog (``gpuwarden.xid``) to a recommended
action."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from anomaly.detectors import Findings
from anomaly.ledger import GpuKey, gpu_key
from anomaly.needs import GPU_UP, XID_COUNTER, XID_GAUGE
from anomaly.series import Step, View
from anomaly.signaturefindings import FIRED, IMPLAUSIBLE_JUMP, SignatureRules, find_step
from anomaly.thresholds import FloatArray
from gpuwarden.labelnumbers import label_number
from gpuwarden.model import RecommendedAction
from gpuwarden.xid import XidEntry, parse_xid_catalog, xid_action, xid_catalog

# Above any XID code NVIDIA has defined (its catalog ends at 172 after 20 years, a few added a year): a larger
# code on the last-XID gauge is held for one read, like a counter's implausible jump.
MOST_PLAUSIBLE_XID = 1000


def load_xid_catalog(text: str | None = None) -> dict[int, XidEntry]:
    """The XID catalog shipped with the package (``gpuwarden.xid``), or parsed from ``text``."""
    return parse_xid_catalog(text) if text is not None else dict(xid_catalog())


class XidRules(SignatureRules):
    """New XIDs on the counters and on the gauge, a GPU's XID told once though both report it."""

    catalog: dict[int, XidEntry]
    # gpu_up and the XID counters as last read together: the GPUs whose XIDs the counters raise, looked
    # up at the first new XID on the gauge after the read (``_counted``, what a snapshot keeps).
    _counting: tuple[Step | None, Step] | None
    _counted: set[GpuKey] | None

    def _xid_finding(
        self, query: str, labels: list[Mapping[str, str]], codes: Sequence[int | None], values: FloatArray
    ) -> Findings:
        """``codes``: None where the series' ``xid`` label is no number (it is kept, not replaced)."""
        entries = [self.catalog.get(c) if c is not None else None for c in codes]
        actions = [xid_action(e) if e else RecommendedAction.INVESTIGATE for e in entries]
        summaries = [
            f"XID {c} {e.mnemonic}: {e.description}" if e else f"XID {c} (not in the catalog)"
            for c, e in zip(codes, entries, strict=True)
        ]
        alert_labels = [{"xid": str(c)} if c is not None else {} for c in codes]
        labels = [{**lab, **extra} for lab, extra in zip(labels, alert_labels, strict=True)]
        return Findings(
            self.name,
            query,
            labels,
            np.full(len(codes), FIRED),
            values,
            action=actions,
            summary=summaries,
            alert_labels={"alertname": "GpuXidError"},
            immediate=True,
        )

    def _xid_counter(self, view: View) -> list[Findings]:
        step = find_step(view, XID_COUNTER)
        if step is None:
            return []
        # An XID series is created by its first event: on a GPU already known, a new series counts from zero.
        increase = self._values.increase(view, step, count_new=True, most=IMPLAUSIBLE_JUMP)
        rows = np.flatnonzero(increase > 0).tolist()
        if not rows:
            return []
        labels = [step.labels[i] for i in rows]
        codes = [label_number(lab.get("xid", "0")) for lab in labels]
        return [self._xid_finding(step.query, labels, codes, increase[rows])]

    def _xid_gauge(self, view: View) -> list[Findings]:
        step = view.latest.get(XID_GAUGE)
        if step is None:
            return []
        # A missed scrape (NaN) is neither a new XID nor the end of the last one: it leaves no row.
        rows, values, before = self._values.update(step, view.time)
        # A code no XID has (dcgm-exporter has served 808334905) is believed once the next read still has it,
        # as a last-XID gauge keeps its code; before, it raised, and the fall back to the last real XID
        # raised that XID and its remediation again. Codes in the plausible range raise at once, known or not.
        # A fall to 0 (the gauge clears only with a driver reset or an exporter restart) is held likewise:
        # the same code back at the next read is the old XID, not a new one.
        plausible = (values >= 0) & (values <= MOST_PLAUSIBLE_XID) & (values == np.floor(values))
        cleared = (values == 0) & (before > 0)
        believed = self._values.confirmed(step, rows, values, before, ~plausible | cleared)
        rows, values, before = rows[believed], values[believed], before[believed]
        new = (values > 0) & np.isfinite(before) & (values != before)
        # Only while the counters are read at all: a config that reads the gauge alone relies on it. At a
        # tick that did not read them because they were not due (a longer step than the gauge's), those of
        # their last read: before, the gauge raised each XID the counters raised again at their next step.
        counters = find_step(view, XID_COUNTER)
        if counters is not None:
            self._counting, self._counted = (view.latest.get(GPU_UP), counters), None
        elif view.not_due.isdisjoint((XID_COUNTER, XID_COUNTER + "_total")):
            self._counting, self._counted = None, None
        counted = self._counted_gpus() if new.any() else set()
        if counted:
            # gpuwarden's exporter counts XIDs exactly on its GPUs: the gauge would report them twice. A
            # mixed fleet's dcgm-exporter-only nodes have the gauge alone.
            new &= np.array([gpu_key(step.labels[i]) not in counted for i in rows.tolist()], dtype=bool)
        if not new.any():
            return []
        rows = rows[new]
        labels = [step.labels[i] for i in rows.tolist()]
        return [self._xid_finding(step.query, labels, [int(v) for v in values[new]], values[new])]

    def _counted_gpus(self) -> set[GpuKey]:
        """The GPUs whose XIDs gpuwarden's exporter counts, as last read (none while it reads no counters):
        those it reports up (it exports ``gpu_up`` for each GPU it watches) and those with an XID counter
        series (one from each GPU's first XID). Looked up once per read of the counters."""
        if self._counted is None:
            self._counted = self._counted_as_read()
        return self._counted

    def _counted_as_read(self) -> set[GpuKey]:
        """``_counted_gpus``, not kept: a snapshot's copy, made while a tick may run, writes nothing (one kept
        from the read before the tick's own would have been the tick's)."""
        counted, steps = self._counted, self._counting or ()
        if counted is not None:
            return counted
        return {gpu_key(lab) for step in steps if step is not None for lab in step.labels}
