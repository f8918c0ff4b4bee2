"""Speedup ratios between paired configurations, each with an interquartile noise band.

A speedup is ``median(reference) / median(candidate)``: above 1 the candidate is faster. Its noise
band is ``[q1(reference) / q3(candidate), q3(reference) / q1(candidate)]``, the ratios reachable
when both medians move within their own interquartile ranges. A speedup is called ``clear`` only
when the whole band lies on one side of 1; otherwise the difference is within run-to-run noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Pairing:
    """Rows that differ only in ``column`` (``reference`` vs ``candidate``), matched on ``by``.

    ``names`` are how the two sides are shown; defaults to the values themselves. ``modes``
    limits the pairing to those timing modes; defaults to all.
    """

    title: str
    column: str
    reference: object
    candidate: object
    by: tuple[str, ...]
    names: tuple[str, str] | None = None
    modes: tuple[str, ...] | None = None

    @property
    def reference_name(self) -> str:
        return self.names[0] if self.names else str(self.reference)

    @property
    def candidate_name(self) -> str:
        return self.names[1] if self.names else str(self.candidate)

    def ratios(self, view: pd.DataFrame) -> pd.DataFrame:
        """One row per matched pair of measured rows in ``view``, sorted by ``by``."""
        measured = view[view["status"] == "ok"]
        if self.modes is not None:
            measured = measured[measured["mode"].isin(self.modes)]
        reference = self._side(measured, self.reference)
        candidate = self._side(measured, self.candidate)
        # merge matches blank keys to blank keys (e.g. no image size in "model" mode)
        pairs = reference.merge(candidate, on=list(self.by), suffixes=("_ref", "_cand"))
        result = pd.DataFrame(
            {
                **{column: pairs[column] for column in self.by},
                "reference_ms": pairs["median_ref"] * 1e3,
                "candidate_ms": pairs["median_cand"] * 1e3,
                "speedup": pairs["median_ref"] / pairs["median_cand"],
                "band_low": pairs["q1_ref"] / pairs["q3_cand"],
                "band_high": pairs["q3_ref"] / pairs["q1_cand"],
            }
        )
        result["clear"] = (result["band_low"] > 1) | (result["band_high"] < 1)
        return result.sort_values(list(self.by), kind="stable", ignore_index=True)

    def _side(self, measured: pd.DataFrame, value: object) -> pd.DataFrame:
        rows = measured[measured[self.column] == value]
        rows = rows.drop_duplicates(list(self.by), keep="last")
        return rows[[*self.by, "median", "q1", "q3"]]


FUSED_VS_EXTERNAL = Pairing(
    title="Fused preprocessing vs external OpenCV",
    column="preprocessing",
    reference="external",
    candidate="fused",
    by=("model", "fuse_cbn", "device", "mode", "batch"),
    # In "model" and "raw" modes a fused graph still preprocesses a raw frame while an external
    # one gets a ready tensor; only "e2e" (raw frames in, logits out) compares like with like.
    modes=("e2e",),
)
FUSION_ON_VS_OFF = Pairing(
    title="Conv-bias-nonlinearity fusion on vs off",
    column="fuse_cbn",
    reference=False,
    candidate=True,
    by=("model", "preprocessing", "device", "mode", "batch"),
    names=("cbn-off", "cbn-on"),
)


def device_pairings(view: pd.DataFrame, baseline: str) -> list[Pairing]:
    """One pairing per device other than ``baseline`` found in ``view`` (none without baseline).

    Devices are the device-config names the bench suites record (``cpu``, ``cpu-2t``, ``cuda``...),
    so runs saved on different machines merge as long as their device names differ.
    """
    devices = sorted(str(d) for d in view["device"].dropna().unique())
    if baseline not in devices:
        return []
    return [
        Pairing(
            title=f"{device} vs {baseline}",
            column="device",
            reference=baseline,
            candidate=device,
            by=("benchmark", "mode", "batch", "image_size"),
        )
        for device in devices
        if device != baseline
    ]
