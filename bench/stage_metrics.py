"""The worker's stage metrics (``colorize_stage_duration_seconds``) as the service benchmark
reads them from its metrics endpoint, and the table it prints of them."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import STAGES


@dataclass
class StageTotals:
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)

    def minus(self, earlier: StageTotals) -> StageTotals:
        return StageTotals(
            {k: v - earlier.seconds.get(k, 0.0) for k, v in self.seconds.items()},
            {k: v - earlier.counts.get(k, 0.0) for k, v in self.counts.items()},
        )


def stage_totals(metrics_url: str) -> StageTotals:
    with urllib.request.urlopen(metrics_url, timeout=30) as response:
        text = response.read().decode()
    totals = StageTotals()
    for family in text_string_to_metric_families(text):
        if family.name != "colorize_stage_duration_seconds":
            continue
        for sample in family.samples:
            stage = sample.labels["stage"]
            if sample.name.endswith("_sum"):
                totals.seconds[stage] = sample.value
            elif sample.name.endswith("_count"):
                totals.counts[stage] = sample.value
    return totals


def stage_table(
    stages: StageTotals,
    images: int,
    in_process: Mapping[str, float],
    in_process_images_per_s: float,
    wall_s: float,
    processes: int,
) -> list[str]:
    """Seconds per image of each stage in the service and in the in-process pipeline
    (``in_process``: its seconds per image by stage)."""
    known = [stage for stage in STAGES if stage != "queue_wait"]
    others = sorted(set(stages.seconds) - set(STAGES))
    lines = [f"  {'stage':<12} {'service ms/image':>17} {'in-process ms/image':>20} {'calls/image':>12}"]
    busy = 0.0
    for stage in known + others:
        seconds, calls = stages.seconds.get(stage, 0.0), stages.counts.get(stage, 0.0)
        if not calls and stage not in in_process:
            continue
        busy += seconds
        reference = in_process.get(stage)
        reference_text = f"{reference * 1000:20.1f}" if reference is not None else f"{'-':>20}"
        lines.append(f"  {stage:<12} {seconds / images * 1000:17.1f} {reference_text} {calls / images:12.2f}")
    lines.append(f"  {'all stages':<12} {busy / images * 1000:17.1f} {sum(in_process.values()) * 1000:20.1f}")
    lines.append(
        f"  {'wall x procs':<12} {wall_s * processes / images * 1000:17.1f} "
        f"{processes / in_process_images_per_s * 1000:20.1f}   (process time available per image)"
    )
    waits, tasks = stages.seconds.get("queue_wait", 0.0), stages.counts.get("queue_wait", 0.0)
    if tasks:
        lines.append(
            f"  queue wait: {waits / tasks * 1000:.0f} ms per task on average ({tasks:.0f} tasks; not process time)"
        )
    return lines
