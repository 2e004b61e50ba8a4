"""Pseudo-spectral solver for 2D incompressible Navier-Stokes in vorticity form.

The equation on the periodic square ``[0, L)^2`` is

    d(omega)/dt + u . grad(omega) = nu lap(omega) - alpha omega + A sin(2 pi k_f y / L)

with the stream function ``psi`` defined by ``-lap(psi) = omega`` and the velocity
``u = (u_x, u_y) = (d(psi)/dy, -d(psi)/dx)``. With this convention ``omega`` is
``d(u_y)/dx - d(u_x)/dy``, the z component of ``curl(u)``, and ``div(u)`` vanishes
identically. Units are nondimensional.

A state is a real tensor ``(B, N, N)`` indexed ``[b, j, i] = omega(x_i, y_j)`` with
``x_i = i L / N``: the second axis is y, the third x.

Time stepping: viscosity and drag are integrated exactly by an integrating factor,
and the advection and forcing terms by the classical four-stage Runge-Kutta method
in the integrating-factor frame (Lawson RK4, fourth order). The advection term is
dealiased with the 2/3 rule.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from simulations import spectral
from simulations.integrators import RK4Buffers, lawson_rk4_step
from simulations.validation import (
    as_batch_parameter,
    check_vorticity,
    fixed_step_count,
    raise_diverged,
    validate_solver_settings,
)

log = logging.getLogger(__name__)

SETTINGS_ATTR = "solver_settings"
"""Root attribute of a canonical file with ``NavierStokes2D.settings`` as JSON text."""


class NavierStokes2D:
    """Batched pseudo-spectral solver for forced 2D Navier-Stokes with linear drag.

    Parameters
    ----------
    n_grid : int
        Grid points per axis, N (at least 8).
    domain_length : float
        Side L of the periodic square.
    forcing_wavenumber : int
        Mode number k_f of the Kolmogorov forcing ``A sin(2 pi k_f y / L)``.
    drag : float
        Linear drag coefficient alpha (>= 0), units 1 / time.
    cfl : float
        Courant number of the adaptive step, ``dt = cfl * dx / max|u|``. By an
        estimate from RK4's stability limit on the imaginary axis (2.83) and
        ``|k| <= sqrt(2) N / 3`` after dealiasing, the step is stable up to about 0.95.
    max_dt : float
        Upper bound on the adaptive time step.
    dealias : bool
        Apply the 2/3 rule to the advection term.
    device, dtype
        Where and in which real precision (float64 or float32) to compute.

    Examples
    --------
    >>> solver = NavierStokes2D(32)
    >>> generator = torch.Generator().manual_seed(0)
    >>> omega = solver.random_initial_vorticity(2, generator=generator)
    >>> nu, amplitude = torch.tensor([1e-2, 2e-2]), torch.tensor([3.0, 3.0])
    >>> solver.advance(omega, nu, amplitude, duration=0.5).shape
    torch.Size([2, 32, 32])
    """

    def __init__(
        self,
        n_grid: int,
        *,
        domain_length: float = 2.0 * math.pi,
        forcing_wavenumber: int = 4,
        drag: float = 0.1,
        cfl: float = 0.5,
        max_dt: float = 0.1,
        dealias: bool = True,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        validate_solver_settings(
            n_grid, domain_length, forcing_wavenumber, drag, cfl, max_dt, dtype
        )
        self.n_grid = int(n_grid)
        self.domain_length = float(domain_length)
        self.forcing_wavenumber = int(forcing_wavenumber)
        self.drag = float(drag)
        self.cfl = float(cfl)
        self.max_dt = float(max_dt)
        self.dealias = bool(dealias)
        self.device = torch.device(device)
        self.dtype = dtype
        self.n_steps_taken = 0
        """Time steps taken by ``advance`` since construction, over all calls."""

        # spectral operators on the rfft2 half-spectrum (N, N // 2 + 1)
        self.k_y, self.k_x = spectral.wavenumbers(
            self.n_grid, self.domain_length, device=self.device, dtype=dtype
        )
        self._k_squared = self.k_x**2 + self.k_y**2
        self._inverse_k_squared = torch.where(
            self._k_squared > 0, 1.0 / self._k_squared.clamp_min(1e-30), 0.0
        )
        self._mask = spectral.truncation_mask(
            self.n_grid, dealias=self.dealias, device=self.device
        )

        # complex multipliers giving u_x, u_y, d(omega)/dx, d(omega)/dy from omega_hat,
        # with the truncation mask folded in; stacked so one irfft2 call does all four
        mask = self._mask.to(dtype)
        self._advection_operators = torch.stack(
            [
                1j * self.k_y * self._inverse_k_squared * mask,
                -1j * self.k_x * self._inverse_k_squared * mask,
                1j * self.k_x * mask,
                1j * self.k_y * mask,
            ]
        )[:, None]

        # unit-amplitude forcing profile sin(2 pi k_f y / L), constant along x
        y, _ = self.coordinates()
        profile = torch.sin(2.0 * math.pi * self.forcing_wavenumber * y / domain_length)
        profile = profile[:, None].expand(self.n_grid, self.n_grid)
        self._unit_forcing_hat = torch.fft.rfft2(profile)

    @property
    def settings(self) -> dict[str, Any]:
        """JSON-serializable constructor arguments, without device."""
        return {
            "n_grid": self.n_grid,
            "domain_length": self.domain_length,
            "forcing_wavenumber": self.forcing_wavenumber,
            "drag": self.drag,
            "cfl": self.cfl,
            "max_dt": self.max_dt,
            "dealias": self.dealias,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    @classmethod
    def from_file_attrs(
        cls, attrs: Mapping[str, Any], *, device: torch.device | str = "cpu"
    ) -> NavierStokes2D:
        """Rebuild the solver that wrote a canonical file from its root attributes.

        ``attrs`` is the root ``h5py`` attribute mapping (``file.attrs``); the
        settings are read from its ``solver_settings`` JSON text.
        """
        if SETTINGS_ATTR not in attrs:
            raise KeyError(
                f"root attribute {SETTINGS_ATTR!r} not found (attributes present: "
                f"{sorted(attrs)}); the file was not written by "
                "simulations.navier_stokes.generate_dataset, so pass the solver "
                "settings to NavierStokes2D directly"
            )
        settings = json.loads(attrs[SETTINGS_ATTR])
        dtype = getattr(torch, settings.pop("dtype", "float64"))
        return cls(**settings, dtype=dtype, device=device)

    def coordinates(self) -> tuple[Tensor, Tensor]:
        """Return the grid coordinates ``y`` and ``x``, each ``(N,)``, at ``i L/N``."""
        points = torch.arange(self.n_grid, device=self.device, dtype=self.dtype)
        coordinate = points * (self.domain_length / self.n_grid)
        return coordinate, coordinate.clone()

    # diagnostics

    def velocity(self, vorticity: Tensor) -> tuple[Tensor, Tensor]:
        """Return the velocity ``(u_x, u_y)``, each ``(B, N, N)``, of a vorticity field.

        The Nyquist modes (and, with dealiasing, all modes above the 2/3 cutoff) of
        ``vorticity`` are dropped, so the spectral divergence vanishes to round-off.
        """
        check_vorticity(vorticity, self.n_grid)
        omega_hat = torch.fft.rfft2(vorticity.to(self.device, self.dtype))
        u_x, u_y = self._velocity_hat(omega_hat * self._mask)
        n_grid = (self.n_grid, self.n_grid)
        return torch.fft.irfft2(u_x, s=n_grid), torch.fft.irfft2(u_y, s=n_grid)

    def advection(self, vorticity: Tensor) -> Tensor:
        """Return the (dealiased) advection term ``u . grad(omega)``, ``(B, N, N)``."""
        check_vorticity(vorticity, self.n_grid)
        omega_hat = torch.fft.rfft2(vorticity.to(self.device, self.dtype))
        workspace = _Workspace(self, omega_hat, forcing_hat=torch.zeros(()))
        advection_hat = torch.empty_like(omega_hat)
        workspace.advection_hat(omega_hat, advection_hat)
        return torch.fft.irfft2(advection_hat, s=(self.n_grid, self.n_grid))

    def energy_spectrum(self, vorticity: Tensor) -> tuple[Tensor, Tensor]:
        """Compute the isotropic shell-summed kinetic energy spectrum.

        Returns
        -------
        k : Tensor
            ``(K,)`` angular wavenumbers ``2 pi n / L`` of the shells ``n = 0 .. K-1``.
        energy : Tensor
            ``(B, K)``, the kinetic energy ``|u_hat|^2 / 2`` summed over the modes
            with ``round(|n|) = n``. ``energy.sum(-1)`` equals the domain mean of
            ``|u|^2 / 2`` (units velocity squared).
        """
        check_vorticity(vorticity, self.n_grid)
        omega_hat = torch.fft.rfft2(vorticity.to(self.device, self.dtype))
        omega_hat = omega_hat / self.n_grid**2
        density = 0.5 * omega_hat.abs() ** 2 * self._inverse_k_squared
        shells, energy = spectral.shell_sum(density, self.n_grid)
        return shells.to(self.dtype) * (2.0 * math.pi / self.domain_length), energy

    def random_initial_vorticity(
        self,
        batch_size: int,
        *,
        generator: torch.Generator,
        peak_wavenumber: float = 4.0,
        rms_velocity: float = 1.0,
    ) -> Tensor:
        """Draw Gaussian random vorticity fields ``(B, N, N)`` with zero mean.

        The shell-summed energy spectrum is proportional to
        ``n^4 exp(-2 (n / n_p)^2)``, which peaks at mode number ``n_p =
        peak_wavenumber``, and each field is scaled so that its root-mean-square
        speed equals ``rms_velocity``. Noise is drawn one field at a time on
        ``generator.device`` and then moved, so a CPU generator gives the same
        fields on every device and for every split of a run into batches.
        """
        if peak_wavenumber <= 0 or rms_velocity <= 0:
            raise ValueError(
                f"got peak_wavenumber={peak_wavenumber}, rms_velocity={rms_velocity}; "
                "both must be positive"
            )
        shape = (self.n_grid, self.n_grid)
        noise = [
            torch.randn(
                shape, generator=generator, device=generator.device, dtype=torch.float64
            )
            for _ in range(batch_size)
        ]
        noise_hat = torch.fft.rfft2(torch.stack(noise).to(self.device, self.dtype))

        # a shell contains ~n modes and |omega_hat|^2 = k^2 |u_hat|^2, so per mode
        # |omega_hat|^2 ~ n E(n) = n^5 exp(-2 (n / n_p)^2)
        mode_number = self._k_squared.sqrt() * (self.domain_length / (2.0 * math.pi))
        ratio = mode_number / peak_wavenumber
        amplitude = mode_number**2.5 * torch.exp(-(ratio**2))
        omega = torch.fft.irfft2(noise_hat * amplitude * self._mask, s=shape)

        u_x, u_y = self.velocity(omega)
        rms = (u_x**2 + u_y**2).mean(dim=(-2, -1)).sqrt()
        return omega * (rms_velocity / rms)[:, None, None]

    # time stepping

    def advance(
        self,
        vorticity: Tensor,
        viscosity: Tensor | float,
        forcing_amplitude: Tensor | float,
        duration: float,
        *,
        dt: float | None = None,
    ) -> Tensor:
        """Integrate the vorticity forward by ``duration`` time units.

        Parameters
        ----------
        vorticity : Tensor
            ``(B, N, N)`` initial vorticity, indexed ``[b, y, x]``.
        viscosity : Tensor or float
            ``(B,)`` kinematic viscosity nu per trajectory (>= 0), or one value.
        forcing_amplitude : Tensor or float
            ``(B,)`` forcing amplitude A per trajectory, or one value.
        duration : float
            Time to integrate (>= 0). The last step is shortened so the result is at
            exactly ``duration``.
        dt : float, optional
            Fixed step. ``duration / dt`` must be an integer. By default the step
            adapts to ``min(max_dt, cfl * dx / max|u|)``, taking ``max|u|`` over the
            batch at the start of each step.

        Returns
        -------
        Tensor
            ``(B, N, N)`` vorticity at ``duration``, same dtype as the solver.
        """
        check_vorticity(vorticity, self.n_grid)
        batch = vorticity.shape[0]
        nu = as_batch_parameter(viscosity, batch, "viscosity", self.device, self.dtype)
        amplitude = as_batch_parameter(
            forcing_amplitude, batch, "forcing_amplitude", self.device, self.dtype
        )
        if nu.min() < 0:
            raise ValueError(f"got viscosity={nu.tolist()}; it must be >= 0")
        if not duration >= 0:
            raise ValueError(f"got duration={duration}; it must be >= 0")

        decay_rate = nu[:, None, None] * self._k_squared + self.drag
        forcing_hat = amplitude[:, None, None] * self._unit_forcing_hat
        omega_hat = torch.fft.rfft2(vorticity.to(self.device, self.dtype))
        workspace = _Workspace(self, omega_hat, forcing_hat)
        if dt is None:
            n_steps = self._advance_adaptive(omega_hat, decay_rate, duration, workspace)
        else:
            n_steps = fixed_step_count(duration, dt)
            for _ in range(n_steps):
                workspace.tendency(omega_hat, workspace.buffers.k1)
                lawson_rk4_step(
                    omega_hat, decay_rate, dt, workspace.tendency, workspace.buffers
                )
        self.n_steps_taken += n_steps
        if not torch.isfinite(omega_hat).all():
            raise_diverged(duration, duration)
        return torch.fft.irfft2(omega_hat, s=(self.n_grid, self.n_grid))

    def _advance_adaptive(
        self,
        omega_hat: Tensor,
        decay_rate: Tensor,
        duration: float,
        workspace: _Workspace,
    ) -> int:
        """Step ``omega_hat`` in place to ``duration``; return the number of steps."""
        dx = self.domain_length / self.n_grid
        elapsed, n_steps = 0.0, 0
        while elapsed < duration:
            max_speed = workspace.tendency(
                omega_hat, workspace.buffers.k1, need_speed=True
            )
            if not math.isfinite(max_speed):
                raise_diverged(elapsed, duration)
            dt_limit = self.max_dt
            if max_speed > 0:
                dt_limit = min(dt_limit, self.cfl * dx / max_speed)

            # equal steps over what is left, so the last step lands on duration
            steps_left = max(1, math.ceil((duration - elapsed) / dt_limit))
            dt = (duration - elapsed) / steps_left
            lawson_rk4_step(
                omega_hat, decay_rate, dt, workspace.tendency, workspace.buffers
            )
            elapsed = duration if steps_left == 1 else elapsed + dt
            n_steps += 1
        log.debug("advanced %.4g time units in %d steps", duration, n_steps)
        return n_steps

    def _velocity_hat(self, omega_hat: Tensor) -> tuple[Tensor, Tensor]:
        psi_hat = omega_hat * self._inverse_k_squared
        return 1j * self.k_y * psi_hat, -1j * self.k_x * psi_hat


class _Workspace:
    """Buffers and right-hand side ``forcing - u . grad(omega)`` of one batch."""

    def __init__(
        self, solver: NavierStokes2D, omega_hat: Tensor, forcing_hat: Tensor
    ) -> None:
        batch, n_grid = omega_hat.shape[0], solver.n_grid
        real = {"dtype": solver.dtype, "device": solver.device}
        self.solver = solver
        self.forcing_hat = forcing_hat
        self.buffers = RK4Buffers.like(omega_hat)
        self.fields_hat = torch.empty(
            (4, *omega_hat.shape), dtype=omega_hat.dtype, device=solver.device
        )
        self.fields = torch.empty((4, batch, n_grid, n_grid), **real)
        self.product = torch.empty((batch, n_grid, n_grid), **real)
        self.mask = solver._mask.to(solver.dtype)

    def tendency(
        self, omega_hat: Tensor, out: Tensor, need_speed: bool = False
    ) -> float:
        """Write the tendency to ``out``; return max ``|u|``, or 0 if not needed."""
        self.advection_hat(omega_hat, out)
        max_speed = 0.0
        if need_speed:
            u_x, u_y = self.fields[0], self.fields[1]
            torch.mul(u_x, u_x, out=self.product)
            max_speed = float(self.product.addcmul_(u_y, u_y).max().sqrt())
        torch.sub(self.forcing_hat, out, out=out)
        return max_speed

    def advection_hat(self, omega_hat: Tensor, out: Tensor) -> None:
        """Write the dealiased rfft2 of ``u . grad(omega)`` to ``out``."""
        # fields: u_x, u_y, d(omega)/dx, d(omega)/dy, each (B, N, N)
        n_grid = self.solver.n_grid
        torch.mul(self.solver._advection_operators, omega_hat, out=self.fields_hat)
        torch.fft.irfft2(self.fields_hat, s=(n_grid, n_grid), out=self.fields)
        u_x, u_y, d_omega_dx, d_omega_dy = self.fields
        torch.mul(u_x, d_omega_dx, out=self.product)
        self.product.addcmul_(u_y, d_omega_dy)
        torch.fft.rfft2(self.product, out=out)
        out.mul_(self.mask)
