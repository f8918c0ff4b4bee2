"""What the report says: its sections, built from the tidy table, the gate and the load notes."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mge_harness.reports import formatting as fmt
from mge_harness.reports.compare import Comparison
from mge_harness.reports.decide import (
    HEADLINES,
    decision_mode,
    expected_failure,
    ranking,
    recommendations,
)
from mge_harness.reports.document import Bullets, Details, Section, Table, Text
from mge_harness.reports.gate import METRICS, check_rows, variant_rows
from mge_harness.reports.noise import BUSY_LOAD_PER_CPU, cause
from mge_harness.reports.plots import per_device_figures, runs_and_dates, speedup_figure
from mge_harness.reports.sources import SavedRun
from mge_harness.reports.speedups import (
    FUSED_VS_EXTERNAL,
    FUSION_ON_VS_OFF,
    Pairing,
    device_pairings,
)
from mge_harness.reports.sweep import recommended_lines, sweep_figure, sweep_frame
from mge_harness.reports.table import current_view, device_label


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is rendered from. ``gate_note`` says where the gate came from or why
    there is none; ``skipped`` holds one line per input file that could not be used."""

    table: pd.DataFrame
    runs: tuple[SavedRun, ...]
    gate: dict | None
    gate_note: str
    skipped: tuple[str, ...]
    noise: float
    baseline_device: str
    tuned: dict | None = None
    tuned_note: str = "no tuned.json"


def sections(inputs: ReportInputs) -> list[Section]:
    """The report's sections in reading order; empty sections are left out."""
    view = current_view(inputs.table)
    ours = view[(view["status"] == "ok") & view["variant"].notna()]
    speedups = _ratios([FUSED_VS_EXTERNAL, FUSION_ON_VS_OFF], ours)
    devices = _ratios(device_pairings(ours, inputs.baseline_device), ours)
    built = [
        recommendation_section(inputs, view),
        summary_section(inputs, view, devices),
        ranking_section(view),
        noise_section(ours, inputs),
        gate_section(inputs.gate),
        latency_section(ours),
        ratio_section("Speedups", speedups, "speedup.png", _SPEEDUP_INTRO, ours),
        ratio_section("Devices", devices, "speedup_devices.png", _DEVICE_INTRO, ours),
        plots_section(ours),
        sweep_section(inputs),
        stages_section(inputs),
        not_measured_section(view),
        other_section(view),
        runs_section(inputs),
        definitions_section(inputs.noise),
    ]
    return [section for section in built if section is not None]


Ratios = list[tuple[Pairing, pd.DataFrame]]


def _ratios(pairings: list[Pairing], ours: pd.DataFrame) -> Ratios:
    computed = [(pairing, pairing.ratios(ours)) for pairing in pairings]
    return [(pairing, frame) for pairing, frame in computed if not frame.empty]


def recommendation_section(inputs: ReportInputs, view: pd.DataFrame) -> Section:
    """What to ship at each batch size, then the headline ratios, each with a 95 % interval."""
    mode = decision_mode(view)
    choices = recommendations(view)
    if inputs.gate is None:
        lines = [
            f"Nothing to ship: no gate result ({inputs.gate_note}); only variants that passed "
            "the equivalence gate are recommended."
        ]
    elif inputs.gate.get("status") in ("partial", "incomplete", "error"):
        lines = [
            f"Nothing to ship: the gate result is {inputs.gate['status']} ({inputs.gate_note}), "
            "not a release verdict; run the whole gate."
        ]
    elif not choices:
        lines = ["Nothing to ship: no measured variant passed the equivalence gate."]
    else:
        lines = [f"**{c.setting.label}**: {c.sentence()}" for c in choices]
    for headline in HEADLINES:
        figures = headline.per_batch(view)
        if figures:
            per_batch = "; ".join(f"{setting.label} {ratio}" for setting, ratio in figures)
            modes = "model / raw" if headline.modes else mode
            lines.append(f"**{headline.title}** ({headline.meaning}, {modes}): {per_batch}.")
    excluded = sorted(set(view.loc[expected_failure(view), "variant"].dropna()))
    if excluded:
        lines.append(
            "Never recommended (expected failures in the manifest): "
            + ", ".join(f"`{v}`" for v in excluded)
            + "."
        )
    return Section("Recommendation", (Bullets(tuple(lines)),))


_RANKING_COLUMNS = {
    "rank": ("rank", fmt.integer),
    "variant": ("variant", fmt.text),
    "device": ("device", fmt.text),
    "ms/image": ("per_image_ms", fmt.millis),
    "x fastest": ("x_fastest", fmt.ratio),
    "images/s": ("images_per_s", fmt.rate),
    "gate": ("equivalence", fmt.text),
    "gate margin": ("gate_margin", fmt.general),
    "noisy": ("noisy", fmt.flag),
    "run": ("run", fmt.text),
}


def ranking_section(view: pd.DataFrame) -> Section | None:
    ranked = ranking(view)
    if ranked.empty:
        return None
    blocks: list = [
        Text(
            "Every measured variant x device config, fastest first. `x fastest` is the time over "
            "the fastest row that passed the gate; only rows that passed are ranked. Expected "
            "failures are greyed out."
        )
    ]
    for setting, rows in ranked.groupby("setting", sort=False):
        blocks.append(Text(f"**{setting}, {rows['mode'].iloc[0]}**"))
        blocks.append(
            Table(
                fmt.display(rows, _RANKING_COLUMNS),
                highlight=tuple(rows["noisy"]),
                muted=tuple(rows["expected_failure_flag"]),
            )
        )
    return Section("Ranking", tuple(blocks))


_NOISE_COLUMNS = {
    "variant": ("variant", fmt.text),
    "device": ("device", fmt.text),
    "mode": ("mode", fmt.text),
    "batch": ("batch", fmt.text),
    "rounds": ("rounds", fmt.text),
    "median +-": ("uncertainty", fmt.percent),
    "CV": ("cv", fmt.percent),
    "likely cause": ("cause", fmt.text),
    "run": ("run", fmt.text),
}


def noise_section(ours: pd.DataFrame, inputs: ReportInputs) -> Section | None:
    if ours.empty:
        return None
    loads = [
        f"run `{run.label}`: " + _load_text(run.load())
        for run in inputs.runs
        if run.label in set(ours["run"])
    ]
    intro = Text(
        f"A row is noisy when its median is uncertain by more than {inputs.noise:.0%} (half-width "
        "of its 95 % interval, 1.57 IQR / sqrt(rounds), over the median), and every row of a "
        "run saved at a load above one task per CPU (other processes took turns on its cores, "
        "so its medians do not repeat). The machine's load when each run was saved:"
    )
    noisy = ours[ours["noisy"].fillna(False).astype(bool)]
    if noisy.empty:
        return Section("Noise", (intro, Bullets(tuple(loads)), Text("No row is noisy.")))
    noisy = noisy.assign(cause=[cause(row) for _, row in noisy.iterrows()])
    noisy = noisy.sort_values("uncertainty", ascending=False, kind="stable")
    return Section(
        "Noise", (intro, Bullets(tuple(loads)), Table(fmt.display(noisy, _NOISE_COLUMNS)))
    )


def _load_text(load: dict) -> str:
    parts = []
    if load["load_per_cpu"] is not None:
        parts.append(f"load {load['load_per_cpu']:.2f} per CPU")
    if load["steal"] is not None:
        parts.append(f"CPU steal {load['steal']:.1%}")
    return ", ".join(parts) or "not recorded (saved before the harness recorded load)"


_SWEEP_COLUMNS = {
    "variant": ("variant", fmt.text),
    "batch": ("batch", fmt.text),
    "config": ("config", fmt.text),
    "verdict": ("verdict", fmt.text),
    "recommended": ("recommended", fmt.flag),
    "speedup": ("speedup", fmt.ratio),
    "95 % low": ("low", fmt.ratio),
    "95 % high": ("high", fmt.ratio),
    "cpu/wall": ("cpu_per_wall", fmt.general),
    "baseline ms": ("baseline_ms", fmt.millis),
    "config ms": ("candidate_ms", fmt.millis),
    "margin": ("margin", fmt.general),
    "reason": ("reason", fmt.text),
}


def sweep_section(inputs: ReportInputs) -> Section | None:
    tuned = inputs.tuned
    if tuned is None:
        return None
    frame = sweep_frame(tuned)
    frame["reason"] = frame["reason"].map(_short)
    baseline = tuned.get("baseline", "cpu")
    cpu = (tuned.get("machine_info") or {}).get("cpu")
    where = ""
    if isinstance(cpu, dict) and cpu.get("brand_raw"):
        flags = ", ".join(cpu.get("simd_flags") or ()) or "no SIMD flags recorded"
        where = f", measured on {cpu['brand_raw']} ({flags})"
    intro = Text(
        f"`python -m bench.tune` ({inputs.tuned_note}{where}), model `{tuned.get('model')}`: every "
        f"Lite configuration against `{baseline}` on the same variant, timed paired (speedup = "
        f"{baseline} time / config time, 95 % bootstrap interval), checked for equivalence "
        "first. Recommended per variant:"
    )
    muted = tuple(frame["verdict"] != "ok")
    blocks: list = [intro, Bullets(tuple(recommended_lines(tuned)))]
    blocks.append(Table(fmt.display(frame, _SWEEP_COLUMNS), muted=muted))
    figure = sweep_figure(
        frame, f"Configuration sweep: model {tuned.get('model')}, {inputs.tuned_note}"
    )
    if figure is not None:
        blocks.append(figure)
    return Section("Configuration sweep", tuple(blocks))


def stages_section(inputs: ReportInputs) -> Section | None:
    """Where each preprocessing recipe spends its time (``pytest bench/bench_stages.py``)."""
    from mge_harness.reports.stages import stage_rows, stages_frame

    frame = stages_frame(stage_rows(b for run in inputs.runs for b in run.benchmarks))
    if frame.empty:
        return None
    intro = Text(
        "Each recipe's preprocessing timed alone at each frame size (`pytest "
        "bench/bench_stages.py --benchmark-autosave`): the host pipeline's `cv2.resize` and "
        "normalise+NCHW pass, or an in-graph recipe's copy-in, Lite operators (median ms of "
        "profiled rounds) and fetch; `x host` is the recipe's time over the host pipeline's."
    )
    return Section("Preprocessing stages", (intro, Table(frame)))


def summary_section(inputs: ReportInputs, view: pd.DataFrame, ratios: Ratios) -> Section:
    measured = view[view["status"] == "ok"]
    items = [
        (
            f"{len(inputs.runs)} saved run(s) from {view['host'].nunique()} host(s), "
            f"{len(measured)} measured configuration(s) in the current view "
            "(the newest row of each variant x device x mode x batch)."
        ),
        _gate_headline(inputs.gate, inputs.gate_note),
        _noise_headline(measured, inputs.noise),
        *(_speedup_headline(pairing, frame) for pairing, frame in ratios),
    ]
    if (view["status"] != "ok").any():
        items.append(
            f"{int((view['status'] != 'ok').sum())} configuration(s) not measured (see below)."
        )
    summary_only = int((measured["timings"] == "summary").sum())
    if summary_only:
        items.append(
            f"{summary_only} row(s) were saved without raw timings (`--benchmark-save-data`): "
            "p90/p99 are blank for them and the other figures are pytest-benchmark's saved stats."
        )
    items.extend(inputs.skipped)
    return Section("Summary", (Bullets(tuple(items)),))


def _noise_headline(measured: pd.DataFrame, noise: float) -> str:
    busy = measured["load_per_cpu"].astype(float) > BUSY_LOAD_PER_CPU
    text = (
        f"{int(measured['noisy'].sum())} of {len(measured)} row(s) noisy (median uncertain by "
        f"more than {noise:.0%}"
    )
    if busy.any():
        text += f", or saved on a busy machine: {int(busy.sum())} row(s)"
    return text + "), flagged in the `noisy` column; causes under Noise."


def _speedup_headline(pairing: Pairing, frame: pd.DataFrame) -> str:
    low, high = frame["speedup"].min(), frame["speedup"].max()
    return (
        f"{pairing.title}: speedup {low:.2f}x to {high:.2f}x over {len(frame)} "
        f"configuration(s), {int(frame['clear'].sum())} clear of the noise band."
    )


def _gate_headline(gate: dict | None, note: str) -> str:
    if gate is None:
        return f"Equivalence gate: none ({note})."
    passed = gate.get("passed")
    verdict = "**PASSED**" if passed is True else "**FAILED**" if passed is False else "unknown"
    status = gate.get("status")
    if status == "incomplete":
        verdict += ", the gate did not finish (killed, crashed or interrupted)"
    elif status == "partial":
        missing = len(gate.get("not_run") or [])
        verdict = f"**partial run: not a release verdict** ({missing} check(s) did not run)"
    elif status == "error":
        verdict += f", the release was refused: {gate.get('error')}"
    return f"Equivalence gate: {verdict} ({note})."


def gate_section(gate: dict | None) -> Section | None:
    if gate is None:
        return None
    facts = [
        f"{label} `{gate[field]}`"
        for field, label in _GATE_FACTS.items()
        if gate.get(field) is not None
    ]
    summary = variant_rows(gate)
    muted = tuple(summary["expected_failure"].notna())
    blocks = [Text(", ".join(facts) + ".")] if facts else []
    notes = [str(n) for n in gate.get("notes") or () if str(n).strip()]
    if notes:  # what the verdict does not cover: no eager source, fixed input sizes ...
        blocks.append(Bullets(tuple(f"Not covered: {n}" for n in notes)))
    blocks.append(
        Table(fmt.drop_blank_columns(fmt.display(summary, _VARIANT_COLUMNS)), muted=muted)
    )
    rows = check_rows(gate)
    rows["message"] = rows["message"].map(_short)
    detail = fmt.drop_blank_columns(fmt.display(rows, _GATE_COLUMNS))
    blocks.append(
        Details(f"Every check: {len(rows)} row(s), metrics and messages", (Table(detail),))
    )
    return Section("Equivalence gate", tuple(blocks))


_VARIANT_COLUMNS = {
    "variant": ("variant", fmt.text),
    "verdict": ("verdict", fmt.text),
    "expected failure": ("expected_failure", fmt.text),
    "checks": ("checks", fmt.text),
    "failed": ("failed", fmt.text),
    "gate margin": ("gate_margin", fmt.general),
    "tightest check": ("tightest_check", fmt.text),
    "closest explanation": ("diagnosis", fmt.text),
}
_GATE_FACTS = {
    "harness_version": "harness",
    "release": "Release",
    "model": "model",
    "created": "created",
    "hypothesis_profile": "Hypothesis profile",
}
_GATE_COLUMNS = {
    "variant": ("variant", fmt.text),
    "verdict": ("verdict", fmt.text),
    "expected failure": ("expected_failure", fmt.text),
    "check": ("check", fmt.text),
    "check verdict": ("check_verdict", fmt.text),
    "examples": ("examples", fmt.integer),
    **{name.replace("_", " "): (name, fmt.general) for name in METRICS},
    "margin": ("margin", fmt.general),
    "closest explanation": ("diagnosis", fmt.text),
    "evidence": ("evidence", fmt.text),
    "message": ("message", fmt.text),
}


def _short(message: object, limit: int = 120) -> str | None:
    if message is None or pd.isna(message):
        return None
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_LATENCY_COLUMNS = {
    "variant": ("variant", fmt.text),
    "mode": ("mode", fmt.text),
    "batch": ("batch", fmt.text),
    "image": ("image_size", fmt.text),
    "rounds": ("rounds", fmt.text),
    "median ms": ("median", fmt.ms),
    "p90 ms": ("p90", fmt.ms),
    "p99 ms": ("p99", fmt.ms),
    "IQR ms": ("iqr", fmt.ms),
    "CV": ("cv", fmt.percent),
    "median +-": ("uncertainty", fmt.percent),
    "images/s": ("images_per_s", fmt.rate),
    "cpu/wall": ("cpu_per_wall", fmt.general),
    "noisy": ("noisy", fmt.flag),
    "equivalence": ("equivalence", fmt.text),
    "max abs": ("max_abs", fmt.general),
    "cosine": ("cosine", fmt.general),
    "run": ("run", fmt.text),
}


def latency_section(ours: pd.DataFrame) -> Section | None:
    if ours.empty:
        return None
    blocks: list = [
        Text(
            "Seconds per call are shown in milliseconds; one call processes `batch` images. "
            "`equivalence` is the gate's verdict for the variant, `max abs` and `cosine` its "
            "worst check. `cpu/wall` is the CPU time (MegEngine's event poller thread left "
            "out) over the wall time of the timed rounds: above 1, the configuration used "
            "more than one core. Noisy rows are "
            "highlighted in the HTML report."
        )
    ]
    for device, rows in ours.groupby("device", dropna=False, sort=True):
        rows = rows.sort_values(["mode", "variant", "batch"], kind="stable")
        blocks.append(Text(f"**Device `{device_label(device)}`**"))
        table = fmt.display(rows, _LATENCY_COLUMNS)
        blocks.append(
            Table(table, highlight=tuple(rows["noisy"]), muted=tuple(expected_failure(rows)))
        )
    return Section("Latency", tuple(blocks))


_SPEEDUP_INTRO = (
    "Speedup = median(reference) / median(candidate); above 1 the candidate is faster. The noise "
    "band is [q1(ref)/q3(cand), q3(ref)/q1(cand)]; `clear` means the whole band is on one side of 1."
)
_DEVICE_INTRO = (
    "Per-variant speedups between device configurations, merged from every saved run given "
    "(other machines included); same definitions as above."
)


def ratio_section(
    title: str, ratios: Ratios, figure_name: str, intro: str, ours: pd.DataFrame
) -> Section | None:
    if not ratios:
        return None
    blocks: list = [Text(intro)]
    for pairing, frame in ratios:
        blocks.append(Text(f"**{pairing.title}**"))
        blocks.append(Table(fmt.display(frame, _ratio_columns(pairing))))
    devices = ", ".join(sorted(str(d) for d in ours["device"].dropna().unique())) or "no device"
    caption = f"{title}: speedup against batch on {devices}, {runs_and_dates(ours)}"
    figure = speedup_figure(ratios, figure_name, caption)
    if figure is not None:
        blocks.append(figure)
    return Section(title, tuple(blocks))


_KEY_TITLES = {"fuse_cbn": "cbn fusion", "image_size": "image", "benchmark": "variant"}


def _ratio_columns(pairing: Pairing) -> dict:
    keys = {
        _KEY_TITLES.get(column, column): (column, fmt.cbn if column == "fuse_cbn" else fmt.text)
        for column in pairing.by
    }
    return {
        **keys,
        f"{pairing.reference_name} ms": ("reference_ms", fmt.millis),
        f"{pairing.candidate_name} ms": ("candidate_ms", fmt.millis),
        "speedup": ("speedup", fmt.ratio),
        "band low": ("band_low", fmt.ratio),
        "band high": ("band_high", fmt.ratio),
        "clear": ("clear", fmt.flag),
    }


def plots_section(ours: pd.DataFrame) -> Section | None:
    figures = per_device_figures(ours, "median", "latency ms", "latency", scale=1e3)
    figures += per_device_figures(ours, "images_per_s", "images/s", "throughput")
    if not figures:
        return None
    intro = Text("Median latency (interquartile error bars) and throughput against batch.")
    return Section("Plots", (intro, *figures))


def not_measured_section(view: pd.DataFrame) -> Section | None:
    rows = view[view["status"] != "ok"]
    if rows.empty:
        return None
    columns = {
        name: (name, fmt.text)
        for name in ("benchmark", "device", "mode", "batch", "status", "reason", "run")
    }
    return Section("Not measured", (Table(fmt.display(rows, columns)),))


def other_section(view: pd.DataFrame) -> Section | None:
    rows = view[(view["status"] == "ok") & view["variant"].isna()]
    if rows.empty:
        return None
    columns = {
        "benchmark": ("fullname", fmt.text),
        "rounds": ("rounds", fmt.text),
        "median ms": ("median", fmt.ms),
        "IQR ms": ("iqr", fmt.ms),
        "CV": ("cv", fmt.percent),
        "run": ("run", fmt.text),
    }
    intro = Text("Benchmarks without the harness's `extra_info` (other suites), listed by name.")
    return Section("Other benchmarks", (intro, Table(fmt.display(rows, columns))))


def runs_section(inputs: ReportInputs) -> Section:
    timings = inputs.table.groupby("file")["timings"].agg(
        lambda t: ", ".join(sorted(set(t.dropna())))
    )
    rows = [
        {
            "run": run.label,
            "datetime": run.datetime,
            **run.provenance(),
            "benchmarks": len(run.benchmarks),
            "timings": timings.get(str(run.path), ""),
            "file": str(run.path),
        }
        for run in inputs.runs
    ]
    frame = pd.DataFrame(rows)
    columns = {_RUN_TITLES.get(c, c): (c, fmt.text) for c in frame.columns}
    return Section("Runs", (Table(fmt.drop_blank_columns(fmt.display(frame, columns))),))


_RUN_TITLES = {
    "harness_version": "harness",
    "megengine_version": "MegEngine",
    "lite_version": "Lite",
    "cpu": "CPU",
}


_DEFINITIONS = (
    (
        "**mode** `model`: inference only, input already in the Lite tensor; `e2e`: from raw "
        "uint8 BGR images, host OpenCV preprocessing included for external variants; `raw`: a bare "
        "Lite forward loop, the harness overhead baseline."
    ),
    (
        "**median, p90, p99, IQR** come from the raw per-round timings (numpy, linear "
        "interpolation) when the run was saved with `--benchmark-save-data`."
    ),
    (
        "**median +-** = 1.57 IQR / sqrt(rounds) / median, the relative half-width of the "
        "median's 95 % interval; rows above {noise:.0%} are flagged noisy. **CV** = stddev / "
        "mean, kept for reference (one stall sets it high while the median holds)."
    ),
    "**images/s** = batch / median seconds per call.",
    "The current view keeps the newest run of each configuration; `summary.csv` has every run.",
)


def definitions_section(noise: float) -> Section:
    items = tuple(item.format(noise=noise) for item in _DEFINITIONS)
    return Section("How to read this report", (Bullets(items),))


_COMPARE_COLUMNS = {
    "benchmark": ("benchmark", fmt.text),
    "base ms": ("base_ms", fmt.millis),
    "candidate ms": ("candidate_ms", fmt.millis),
    "ratio": ("ratio", fmt.ratio),
    "canary": ("canary", fmt.ratio),
    "normalised": ("normalised_ratio", fmt.ratio),
    "p-value": ("p_value", fmt.p_value),
    "verdict": ("verdict", fmt.text),
    "failed rules": ("failed", fmt.text),
}


def comparison_sections(comparison: Comparison) -> list[Section]:
    """The sections of a ``--compare`` report: the per-benchmark table and the failures."""
    intro = Text(
        f"Candidate `{comparison.candidate}` against base `{comparison.base}`. ratio = "
        "median(candidate) / median(base), above 1 is slower. p-value: two-sided Mann-Whitney U "
        f"on the raw timings; differences with p >= {comparison.alpha:g} are within noise. "
        "canary: the candidate run's machine-speed canary over the base run's; normalised: the "
        "ratio divided by it, which the rules judge."
    )
    table = Table(fmt.display(comparison.table, _COMPARE_COLUMNS))
    rules = ", ".join(f"`{rule}`" for rule in comparison.rules) or "none given (`--fail-on`)"
    if comparison.failures:
        verdict = Bullets(comparison.failures)
    else:
        verdict = Text("No rule failed." if comparison.rules else "Nothing to check.")
    return [
        Section("Per benchmark", (intro, Text(comparison.drift_text), table)),
        Section("Regressions", (Text(f"Rules: {rules}."), verdict)),
    ]
