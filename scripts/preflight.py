"""Check a data config before training: layout, metadata, statistics and problems.

    python scripts/preflight.py data=pypde_gray_scott
    python scripts/preflight.py data=the_well_example 'data.layout.files=[/data/*.hdf5]'

Prints a report to stdout and exits with status 1 when the layout cannot be read or
the data hold NaN or inf values at valid points (or another problem listed under
``problems``). NaN and inf at points masked by the layout's ``mask`` are printed but
are not problems. It never writes data files, even for a config with
``make_if_missing: true``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import resolved_layout

from surrogates.data.preflight import run_preflight


def number(value) -> str:
    """Format a float (or None) compactly."""
    return "n/a" if value is None else f"{value:.6g}"


def format_field(name: str, info: dict) -> list[str]:
    """Return the lines describing one field and its statistics."""
    lines = [
        f"  {name}: dataset {info['path']!r}, axes {info['axes']}, select "
        f"{info['select']}, shape {tuple(info['shape'])}, dtype {info['dtype']}, "
        f"chunks {info['chunks'] or 'contiguous'}, compression "
        f"{info['compression'] or 'none'}, units {info['units']!r}"
    ]
    statistics = info.get("statistics", {})
    for c in range(info["n_components"]):
        label = f"component {c}: " if info["n_components"] > 1 else ""
        lines.append(
            f"    {label}min {number(statistics['min'][c])}  max "
            f"{number(statistics['max'][c])}  mean {number(statistics['mean'][c])}  "
            f"std {number(statistics['std'][c])}  NaN {statistics['n_nan'][c]}  "
            f"inf {statistics['n_inf'][c]}"
        )
    n_nan_masked = sum(statistics.get("n_nan_masked", []))
    n_inf_masked = sum(statistics.get("n_inf_masked", []))
    if n_nan_masked or n_inf_masked:
        lines.append(
            f"    at masked points (ignored): NaN {n_nan_masked}  inf {n_inf_masked}"
        )
    for offender in statistics.get("offenders", []):
        lines.append(
            f"    non-finite {offender['value']} in {offender['file']}, trajectory "
            f"{offender['trajectory_in_file']}, time index {offender['time_in_file']}, "
            f"component {offender['component']}, {offender['index']}"
        )
    return lines


def format_mask(mask: dict | None) -> str:
    """Return the line describing the mask of points outside the domain."""
    if mask is None:
        return "mask: none (every point is valid)"
    return (
        f"mask: {mask['source']}; {mask['n_valid']} of {mask['n_points']} points "
        f"valid, {mask['n_masked']} masked"
    )


def format_report(report: dict, problems: list[str]) -> list[str]:
    """Return the printed report, one string per line."""
    layout = report["layout"]
    name, join = layout.get("name", "dataset"), layout.get("join", "trajectory")
    lines = [f"layout {name!r} (join: {join})"]
    if "files" in report:
        lines.append(f"files ({len(report['files'])}):")
        shown = report["files"][:10]
        lines += [f"  {path}" for path in shown]
        if len(report["files"]) > len(shown):
            lines.append(f"  ... and {len(report['files']) - len(shown)} more")
        lines.append(
            f"trajectories {report['n_trajectories']}, times {report['n_times']}, "
            f"space {report['space']}"
        )
        lines.append(format_mask(report.get("mask")))
        lines.append("fields:")
        for name, info in report["fields"].items():
            lines += format_field(name, info)
        lines.append("parameters:")
        for name, info in report["parameters"].items():
            lines.append(
                f"  {name}: {info['n_distinct']} distinct values in "
                f"[{number(info['min'])}, {number(info['max'])}] "
                f"{info['units'] or '(no units)'}"
            )
        lines.append("grid:")
        for axis, info in report["grid"].items():
            lines.append(
                f"  {axis}: {info['n']} points in [{number(info['min'])}, "
                f"{number(info['max'])}] {info['units'] or '(no units)'}"
            )
    if problems:
        lines.append(f"problems ({len(problems)}):")
        lines += [f"  - {problem}" for problem in problems]
    else:
        lines.append("no problems found")
    return lines


@hydra.main(version_base=None, config_path="../configs", config_name="preflight")
def main(config: DictConfig) -> None:
    """Run the preflight check of ``config.data`` and exit 1 on any problem."""
    report, problems = run_preflight(
        resolved_layout(config.data),
        max_offenders=int(config.max_offenders),
        max_block_bytes=int(config.max_block_mib * 2**20),
    )
    print("\n".join(format_report(report, problems)))
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
