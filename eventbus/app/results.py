"""What processors may return besides events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchItemFailures:
    """What a batch processor returns when some events failed: their ids.

    Everything before the first failed event (in batch order) is done and committed; from that event on, the
    batch is tried again (AWS Lambda's ``ReportBatchItemFailures``). An empty list means every event succeeded.
    The Lambda form ``{"batchItemFailures": [{"itemIdentifier": "<event id>"}]}`` is accepted too.
    """

    ids: Sequence[str]
