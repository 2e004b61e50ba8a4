"""Tests of the 2D Navier-Stokes solver against exact solutions and invariants."""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from simulations import spectral
from simulations.navier_stokes import NavierStokes2D, generate_dataset

CONFIG = Path(__file__).parents[2] / "configs" / "simulate" / "navier_stokes.yaml"
DEFAULTS = yaml.safe_load(CONFIG.read_text())


@pytest.fixture(autouse=True)
def single_thread():
    # these grids are too small to share between threads, and on a loaded
    # 2-core machine a second intra-op thread made the tests many times slower
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def float64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def random_vorticity(solver: NavierStokes2D, batch_size: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return solver.random_initial_vorticity(batch_size, generator=generator)


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    return float((result - reference).norm() / reference.norm())


# exact solutions


@pytest.mark.parametrize("drag", [0.0, 0.3])
def test_taylor_green_decay(drag):
    solver = NavierStokes2D(32, drag=drag)
    y, x = solver.coordinates()
    k, duration = 2, 2.0
    initial = 2 * k * torch.cos(k * x)[None, :] * torch.cos(k * y)[:, None]
    initial = initial.expand(2, -1, -1)
    viscosity = float64([0.01, 0.05])

    result = solver.advance(initial, viscosity, 0.0, duration)

    rate = 2 * viscosity * k**2 + drag
    expected = initial * torch.exp(-rate * duration)[:, None, None]
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-12)


def test_forced_flow_from_rest():
    # from rest the flow stays the shear flow A (1 - e^{-rt}) / r sin(k_f y),
    # with decay rate r = nu k_f^2 + drag, because its advection term vanishes
    solver = NavierStokes2D(32, drag=0.1, forcing_wavenumber=4)
    y, _ = solver.coordinates()
    viscosity, amplitude, duration = float64([0.01, 0.03]), float64([2.0, 5.0]), 3.0

    result = solver.advance(torch.zeros(2, 32, 32), viscosity, amplitude, duration)

    rate = viscosity * 4**2 + 0.1
    profile = amplitude / rate * (1 - torch.exp(-rate * duration))
    expected = profile[:, None, None] * torch.sin(4 * y)[None, :, None].expand(
        2, 32, 32
    )
    torch.testing.assert_close(result, expected, rtol=1e-8, atol=1e-10)


def test_velocity_sign_convention():
    # omega = sin(x) has psi = sin(x), so u = (d psi/dy, -d psi/dx) = (0, -cos x)
    solver = NavierStokes2D(16)
    _, x = solver.coordinates()
    u_x, u_y = solver.velocity(torch.sin(x).expand(1, 16, 16))
    torch.testing.assert_close(u_x, torch.zeros_like(u_x), rtol=0, atol=1e-12)
    torch.testing.assert_close(u_y, -torch.cos(x).expand(1, 16, 16), rtol=0, atol=1e-12)


# invariants


@pytest.mark.parametrize("dealias", [True, False])
def test_velocity_divergence_free(dealias):
    solver = NavierStokes2D(32, dealias=dealias)
    u_x, u_y = solver.velocity(torch.randn(3, 32, 32, dtype=torch.float64))
    divergence_hat = 1j * solver.k_x * torch.fft.rfft2(
        u_x
    ) + 1j * solver.k_y * torch.fft.rfft2(u_y)
    divergence = torch.fft.irfft2(divergence_hat, s=(32, 32))
    assert divergence.abs().max() < 1e-10


def test_curl_of_velocity_is_vorticity():
    solver = NavierStokes2D(32)
    vorticity = random_vorticity(solver, 2)
    u_x, u_y = solver.velocity(vorticity)
    curl_hat = 1j * solver.k_x * torch.fft.rfft2(
        u_y
    ) - 1j * solver.k_y * torch.fft.rfft2(u_x)
    curl = torch.fft.irfft2(curl_hat, s=(32, 32))
    torch.testing.assert_close(curl, vorticity, rtol=0, atol=1e-10)


def test_energy_spectrum_sums_to_energy():
    solver = NavierStokes2D(32)
    vorticity = random_vorticity(solver, 3)
    k, energy = solver.energy_spectrum(vorticity)
    u_x, u_y = solver.velocity(vorticity)
    mean_energy = 0.5 * (u_x**2 + u_y**2).mean(dim=(-2, -1))
    assert k.shape == (energy.shape[1],)
    torch.testing.assert_close(energy.sum(-1), mean_energy, rtol=1e-12, atol=0)


def test_random_initial_vorticity_statistics():
    solver = NavierStokes2D(32)
    generator = torch.Generator().manual_seed(3)
    vorticity = solver.random_initial_vorticity(
        4, generator=generator, peak_wavenumber=5.0, rms_velocity=2.0
    )
    u_x, u_y = solver.velocity(vorticity)
    rms = (u_x**2 + u_y**2).mean(dim=(-2, -1)).sqrt()
    _, energy = solver.energy_spectrum(vorticity)
    assert vorticity.mean(dim=(-2, -1)).abs().max() < 1e-12
    torch.testing.assert_close(rms, torch.full_like(rms, 2.0), rtol=1e-12, atol=0)
    assert abs(energy.mean(0).argmax().item() - 5) <= 1
    torch.testing.assert_close(random_vorticity(solver, 2), random_vorticity(solver, 2))


def test_advection_is_dealiased():
    # the 2/3 rule makes the kept modes of u.grad(omega) exact: compare them with
    # the product computed on a grid twice as fine, where nothing aliases
    n_grid = 24
    solver = NavierStokes2D(n_grid)
    vorticity = torch.randn(2, n_grid, n_grid, dtype=torch.float64)
    mask = spectral.truncation_mask(n_grid, dealias=True)
    advection_hat = torch.fft.rfft2(solver.advection(vorticity))

    # place the kept modes on the fine grid; the factor 4 is (2N)^2 / N^2
    n_y, n_x = spectral.mode_numbers(n_grid)
    rows = (n_y % (2 * n_grid)).expand_as(mask)[mask]
    columns = n_x.expand_as(mask)[mask]
    fine_hat = torch.zeros(2, 2 * n_grid, n_grid + 1, dtype=advection_hat.dtype)
    fine_hat[:, rows, columns] = 4 * torch.fft.rfft2(vorticity)[:, mask]
    fine = NavierStokes2D(2 * n_grid, dealias=False)
    fine_vorticity = torch.fft.irfft2(fine_hat, s=(2 * n_grid, 2 * n_grid))
    exact_hat = torch.fft.rfft2(fine.advection(fine_vorticity))[:, rows, columns] / 4

    assert advection_hat[:, ~mask].abs().max() < 1e-10
    torch.testing.assert_close(
        advection_hat[:, mask], exact_hat, rtol=0, atol=1e-12 * exact_hat.abs().max()
    )


def test_step_keeps_modes_below_cutoff():
    solver = NavierStokes2D(24)
    vorticity = random_vorticity(solver, 2)
    result = solver.advance(vorticity, 1e-3, 4.0, 0.05, dt=0.05)
    mask = spectral.truncation_mask(24, dealias=True)
    result_hat = torch.fft.rfft2(result)
    assert result_hat[:, ~mask].abs().max() < 1e-12 * result_hat.abs().max()


# time integration


def test_temporal_convergence_order():
    solver = NavierStokes2D(32)
    initial = random_vorticity(solver, 2, seed=1)
    viscosity, amplitude, duration = float64([0.01, 0.02]), float64([3.0, 4.0]), 0.4

    reference = solver.advance(
        initial, viscosity, amplitude, duration, dt=duration / 320
    )
    steps = [duration / 10, duration / 20, duration / 40]
    errors = [
        relative_error(
            solver.advance(initial, viscosity, amplitude, duration, dt=dt), reference
        )
        for dt in steps
    ]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    # classical RK4 in the integrating-factor frame is fourth order
    for order in orders:
        assert abs(order - 4.0) < 0.5, f"errors {errors}, observed orders {orders}"


def test_adaptive_step_lands_on_duration():
    # stopping 1% off the requested time would give an error near 1e-2 here.
    # Landing on it leaves only the RK4 error of the steps taken.
    solver = NavierStokes2D(32)
    initial = random_vorticity(solver, 2, seed=2)
    viscosity, amplitude, duration = float64([0.01, 0.02]), float64([3.0, 4.0]), 0.37
    reference = solver.advance(
        initial, viscosity, amplitude, duration, dt=duration / 400
    )

    steps_before = solver.n_steps_taken
    adaptive = solver.advance(initial, viscosity, amplitude, duration)
    n_steps = solver.n_steps_taken - steps_before
    fixed = solver.advance(
        initial, viscosity, amplitude, duration, dt=duration / n_steps
    )

    u_x, u_y = solver.velocity(initial)
    max_speed = float((u_x**2 + u_y**2).sqrt().max())
    assert n_steps >= duration * max_speed / (solver.cfl * 2 * math.pi / 32)
    assert relative_error(adaptive, reference) < 2 * relative_error(fixed, reference)
    assert relative_error(adaptive, reference) < 1e-3


def test_fixed_step_must_divide_duration():
    solver = NavierStokes2D(16)
    with pytest.raises(ValueError, match="whole number of steps"):
        solver.advance(torch.zeros(1, 16, 16), 0.01, 1.0, 1.0, dt=0.3)


@pytest.mark.parametrize("viscosity", DEFAULTS["viscosity_range"])
def test_long_run_stays_bounded(viscosity):
    # enstrophy balance: d|w|/dt <= -(nu + drag)|w| + |F| for RMS norms |.| on the
    # unit-wavenumber domain, so |w| <= max(|w0|, |F| / (nu + drag)) at all times
    drag = DEFAULTS["drag"]
    amplitude = max(DEFAULTS["forcing_range"])
    solver = NavierStokes2D(
        32, drag=drag, forcing_wavenumber=DEFAULTS["forcing_wavenumber"]
    )
    vorticity = random_vorticity(solver, 2)
    bound = max(
        float(vorticity.pow(2).mean().sqrt()),
        amplitude / math.sqrt(2) / (viscosity + drag),
    )
    for _ in range(20):
        vorticity = solver.advance(vorticity, viscosity, amplitude, 0.5)
        rms = vorticity.pow(2).mean(dim=(-2, -1)).sqrt()
        _, energy = solver.energy_spectrum(vorticity)
        assert torch.isfinite(vorticity).all()
        assert rms.max() <= bound * 1.001
        assert energy.sum(-1).max() <= 0.5 * (bound * 1.001) ** 2
    assert solver.n_steps_taken >= 300


def test_settings_round_trip():
    solver = NavierStokes2D(
        16, drag=0.2, forcing_wavenumber=2, cfl=0.4, dtype=torch.float32
    )
    attrs = {"solver_settings": json.dumps(solver.settings)}
    rebuilt = NavierStokes2D.from_file_attrs(attrs)
    assert rebuilt.settings == solver.settings
    assert rebuilt.dtype == torch.float32


def test_rejects_wrong_vorticity_shape():
    solver = NavierStokes2D(16)
    with pytest.raises(ValueError, match=r"expected \(B, 16, 16\)"):
        solver.advance(torch.zeros(1, 16, 8), 0.01, 1.0, 0.1)


def test_rejects_forcing_above_cutoff():
    with pytest.raises(ValueError, match="forcing_wavenumber"):
        NavierStokes2D(12, forcing_wavenumber=4)


def test_float32_solver_runs():
    solver = NavierStokes2D(16, dtype=torch.float32)
    vorticity = random_vorticity(solver, 2)
    result = solver.advance(vorticity, 0.01, 3.0, 0.2)
    assert result.dtype == torch.float32
    assert bool(torch.isfinite(result).all())
    np.testing.assert_equal(tuple(result.shape), (2, 16, 16))


# dataset generation


def tiny_dataset_arguments(**overrides):
    arguments = dict(
        n_trajectories=3,
        n_grid=16,
        n_snapshots=4,
        snapshot_interval=0.25,
        spinup_time=0.5,
        viscosity_range=[0.01, 0.02],
        forcing_range=[2.0, 3.0],
        seed=7,
        batch_size=2,
    )
    arguments.update(overrides)
    return arguments


def test_generate_dataset_layout(tmp_path):
    path = generate_dataset(tmp_path / "ns.h5", **tiny_dataset_arguments())

    with h5py.File(path, "r") as file:
        vorticity = file["fields/vorticity"]
        assert file.attrs["format"] == "coolmathgans-1"
        assert file.attrs["n_spatial_dims"] == 2
        assert file.attrs["boundary"] == "periodic"
        assert list(file.attrs["space_axes"]) == ["y", "x"]
        assert yaml.safe_load(file.attrs["config"])["n_grid"] == 16
        assert vorticity.shape == (3, 4, 16, 16)
        assert vorticity.dtype == np.float32
        assert vorticity.chunks == (1, 1, 16, 16)
        assert vorticity.attrs["kind"] == "scalar"
        assert bool(np.isfinite(vorticity[...]).all())
        np.testing.assert_allclose(file["grid/time"][...], [0, 0.25, 0.5, 0.75])
        np.testing.assert_allclose(
            file["grid/x"][...], np.arange(16) * 2 * np.pi / 16, rtol=1e-6
        )
        viscosity = file["parameters/viscosity"][...]
        amplitude = file["parameters/forcing_amplitude"][...]
    assert viscosity.min() >= 0.01 * (1 - 1e-6)
    assert viscosity.max() <= 0.02 * (1 + 1e-6)
    assert amplitude.min() >= 2.0
    assert amplitude.max() <= 3.0


def test_generate_dataset_snapshots_follow_solver(tmp_path):
    # snapshot 1 is snapshot 0 advanced by one interval, up to float32 storage
    path = generate_dataset(tmp_path / "ns.h5", **tiny_dataset_arguments())
    with h5py.File(path, "r") as file:
        solver = NavierStokes2D.from_file_attrs(file.attrs)
        snapshots = torch.from_numpy(file["fields/vorticity"][:, :2]).double()
        viscosity = torch.from_numpy(file["parameters/viscosity"][...]).double()
        amplitude = torch.from_numpy(file["parameters/forcing_amplitude"][...])
    advanced = solver.advance(snapshots[:, 0], viscosity, amplitude.double(), 0.25)
    assert relative_error(advanced, snapshots[:, 1]) < 1e-5


def test_generate_dataset_is_reproducible(tmp_path):
    first = generate_dataset(tmp_path / "a.h5", **tiny_dataset_arguments())
    second = generate_dataset(tmp_path / "b.h5", **tiny_dataset_arguments(batch_size=3))
    with h5py.File(first, "r") as a, h5py.File(second, "r") as b:
        np.testing.assert_array_equal(
            a["parameters/viscosity"][...], b["parameters/viscosity"][...]
        )
        # a batch shares one adaptive step, so another batch size changes the
        # steps, and the values by the time-stepping error only
        np.testing.assert_allclose(
            a["fields/vorticity"][...], b["fields/vorticity"][...], rtol=0, atol=1e-4
        )


def test_generate_dataset_velocity_field(tmp_path):
    path = generate_dataset(
        tmp_path / "ns.h5", **tiny_dataset_arguments(write_velocity=True)
    )
    with h5py.File(path, "r") as file:
        velocity = file["fields/velocity"]
        assert velocity.shape == (3, 4, 16, 16, 2)
        assert velocity.attrs["kind"] == "vector"
        assert velocity.chunks == (1, 1, 16, 16, 2)


def test_simulate_config_matches_generator():
    parameters = inspect.signature(generate_dataset).parameters
    required = {
        name
        for name, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty and name != "path"
    }
    keys = set(DEFAULTS) - {"output"}
    assert keys <= set(parameters)
    assert required <= keys


def test_simulate_script_writes_file(tmp_path):
    repository = Path(__file__).parents[2]
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(repository), environment.get("PYTHONPATH")])
    )
    command = [
        sys.executable,
        str(repository / "scripts" / "simulate.py"),
        "simulate.n_trajectories=2",
        "simulate.n_grid=16",
        "simulate.n_snapshots=2",
        "simulate.spinup_time=0.2",
        "simulate.batch_size=2",
        "simulate.output=relative/ns.h5",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "relative" / "ns.h5", "r") as file:
        assert file["fields/vorticity"].shape == (2, 2, 16, 16)
        config = yaml.safe_load(file.attrs["config"])
    assert config["simulate"]["n_grid"] == 16


def test_unstable_fixed_step_raises():
    solver = NavierStokes2D(16)
    generator = torch.Generator().manual_seed(0)
    vorticity = solver.random_initial_vorticity(1, generator=generator, rms_velocity=50)
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        solver.advance(vorticity, 0.0, 0.0, 20.0, dt=0.5)


def test_default_ranges_resolved_at_64():
    # least resolved corner of the default ranges: lowest viscosity, strongest
    # forcing; the time-averaged spectrum at k = N/3 must be 4 decades below peak
    n_grid = DEFAULTS["n_grid"]
    solver = NavierStokes2D(
        n_grid, drag=DEFAULTS["drag"], forcing_wavenumber=DEFAULTS["forcing_wavenumber"]
    )
    viscosity, amplitude = (
        min(DEFAULTS["viscosity_range"]),
        max(DEFAULTS["forcing_range"]),
    )
    vorticity = solver.advance(random_vorticity(solver, 2), viscosity, amplitude, 10.0)
    spectra = []
    for _ in range(20):
        vorticity = solver.advance(vorticity, viscosity, amplitude, 0.5)
        spectra.append(solver.energy_spectrum(vorticity)[1])
    mean_spectrum = torch.stack(spectra).mean(0)
    decades = torch.log10(mean_spectrum.max(-1).values / mean_spectrum[:, n_grid // 3])
    assert decades.min() >= 4.0, f"decades below peak at k = N/3: {decades.tolist()}"
