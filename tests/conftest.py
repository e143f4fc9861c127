"""Suite-wide option: which emulated chip the tests run on.

`pytest --emulated-arch hailo10h` (or ML_TARGET_TEST_ARCH=hailo10h) makes the emulator's default
card a Hailo-10H driven by the emulated HailoRT 5.x module, and the test helpers write hailo10h
builds timed by the hailo10h profile (`emulator_helpers.ARCH`, `.PROFILE`), so the tests that run
on a Hailo-8 run on a Hailo-10H. Tests about one chip or one HailoRT line set their chip themselves.
"""

from __future__ import annotations

import os

ARCHES = ("hailo8", "hailo10h")


def pytest_addoption(parser):
    parser.addoption(
        "--emulated-arch", choices=ARCHES, default=os.environ.get("ML_TARGET_TEST_ARCH", "hailo8"),
        help="the chip of the emulated card the tests run on (default hailo8)",
    )


def pytest_configure(config):
    arch = config.getoption("--emulated-arch")
    os.environ["ML_TARGET_TEST_ARCH"] = arch  # read by emulator_helpers and by workers the tests start
    from ml_target.hailo import emulator

    emulator.set_defaults([arch])
    emulator.device().reset()


def pytest_report_header(config):
    return f"emulated card: {config.getoption('--emulated-arch')}"
