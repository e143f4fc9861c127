"""Fixtures of the emulator tests: the emulated device in a known state, and a scheduled VDevice."""

from __future__ import annotations

import pytest

from emulator_helpers import scheduled_params
from ml_target.hailo import emulator
from ml_target.hailo.emulator.hailo_platform import VDevice


@pytest.fixture
def emu():
    """The emulated device with defaults and the no-sleep profile; reset again afterwards."""
    device = emulator.device()
    device.reset()
    device.set_profile("none")
    yield device
    device.reset()


@pytest.fixture
def vdevice(emu):
    """A VDevice with the ROUND_ROBIN scheduler (what the runtime uses)."""
    with VDevice(scheduled_params()) as vd:
        yield vd
