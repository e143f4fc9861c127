"""`python -m ml_target doctor`: one command for the first run on a card.

In-process (default) it opens the device with the worker's settings, loads every task on its own
(so one broken network does not hide the others), and serves the probes through the same app as
`serve`; with `--url` it examines a worker that is already running (the device can have only one
owner), e.g. from inside the container `setup.sh` started. Either way it prints a table with a
verdict and a fix per line, can write the same as JSON, and exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ml_target.catalog import IMMICH_CLIP_DIMS
from ml_target.config import Settings
from ml_target.doctor import checks as static
from ml_target.doctor.client import AsgiClient, Client, UrlClient
from ml_target.doctor.probes import Served, run_probes
from ml_target.doctor.report import Check, Verdict, passed, render, write_json
from ml_target.errors import ConfigurationError
from ml_target.provision.assets import required_networks
from ml_target.text.ocr_dictionary import DICTIONARY_FILE

DESCRIPTION = "check the device, the HEFs and every task end to end with built-in probes (first run on a card)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="examine a running worker (e.g. http://127.0.0.1:3003) instead of opening the device")
    parser.add_argument("--json", dest="json_path", help="also write the report as JSON to this file ('-' for stdout)")


def served_from(health: dict[str, Any]) -> Served:
    """The Immich model names each task answers, from /health's handler descriptions."""
    by_key = {(h["task"], h["type"]): h for h in health.get("handlers", [])}
    clip = by_key.get(("clip", "visual"))
    clip_name = None
    if clip:
        names = clip.get("model_names") or []
        if names:
            clip_name = names[0]
        elif clip.get("serve_any_model_name"):
            clip_name = next(n for n, dim in IMMICH_CLIP_DIMS.items() if dim == clip.get("dim"))
    detection = by_key.get(("facial-recognition", "detection"))
    recognition = by_key.get(("facial-recognition", "recognition"))
    ocr = by_key.get(("ocr", "detection"))
    ocr_recognition = by_key.get(("ocr", "recognition")) or {}
    return Served(
        clip=clip_name,
        faces=(detection.get("model_names") or [None])[0] if detection else None,
        faces_recognition=bool(recognition and recognition.get("model_names")),
        ocr=(ocr.get("models") or [None])[0] if ocr else None,
        ocr_channels=str(ocr_recognition.get("channels", "bgr")),
        emulated=bool(health.get("emulated")),
    )


async def examine(client: Client, settings: Settings, early: list[Check]) -> list[Check]:
    """Every check on a worker reachable through `client`."""
    health = await client.health()
    found = list(early) + static.device_checks(health)
    if Path(settings.models_dir).is_dir():
        found += static.file_checks(settings.models_dir, required_networks(settings), health.get("arch"))
    found += static.edge_checks(health.get("hefs", {}), health.get("arch"))
    found += static.text_cut_checks(health.get("handlers", []))
    found += await run_probes(client, served_from(health), Path(settings.models_dir) / DICTIONARY_FILE)
    return found


async def examine_in_process(settings: Settings) -> list[Check]:
    """Open the device, load each task separately, and examine the resulting app."""
    from ml_target.app import create_app_for_runtime
    from ml_target.hailo.runtime import Runtime
    from ml_target.tasks import create_task_handlers

    if settings.hailo_device == "emulator":
        from ml_target.testing.emulated_models import register_stand_ins

        register_stand_ins()
    # TinyCLIP answers no Immich name without the opt-in, and a probe needs an answer; the opt-in changes
    # which names are served, not how. The face settings stay as configured: doctor checks the mode that runs.
    probing = dataclasses.replace(settings, clip_serve_any_model_name=True)
    runtime = Runtime(probing)
    handlers, early = [], []
    for task in settings.tasks:
        try:
            handlers += create_task_handlers(task, probing, runtime)
            early.append(Check(f"task {task}", Verdict.PASS, "loaded"))
        except ConfigurationError as exc:
            early.append(Check(f"task {task}", Verdict.FAIL, f"does not load: {exc}", "follow the message; then run doctor again"))
    async with AsgiClient(create_app_for_runtime(probing, handlers, runtime)) as client:
        return await examine(client, settings, early)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.url:
        found = asyncio.run(examine(UrlClient(args.url), settings, []))
    else:
        try:
            found = asyncio.run(examine_in_process(settings))
        except ConfigurationError as exc:
            found = [Check("device", Verdict.FAIL, f"cannot start: {exc}", "follow the message; README, Troubleshooting")]
    print(render(found))
    if args.json_path:
        context = {"mode": "url" if args.url else "in-process", "url": args.url, "settings": _settings_summary(settings)}
        if args.json_path == "-":
            json.dump({"passed": passed(found), **context, "checks": [c.to_dict() for c in found]}, sys.stdout, indent=2, default=str)
            print()
        else:
            write_json(found, Path(args.json_path), context)
    return 0 if passed(found) else 1


def _settings_summary(settings: Settings) -> dict[str, Any]:
    keys = ("hailo_device", "hailo_arch", "models_dir", "tasks", "clip_backend", "face_detector", "face_recogniser")
    return {key: str(getattr(settings, key)) for key in keys}
