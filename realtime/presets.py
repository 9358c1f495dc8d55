"""Presets and MIDI mappings as JSON files in the user's config directory.

The folder is :func:`config_dir`; the window keeps its recent bundles list there too
(``recent.json``).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from .controller import MidiController
from .params import ControlBus

if TYPE_CHECKING:
    from .rack import EngineRack

FORMAT_VERSION = 1


def config_dir() -> Path:
    """The user's driftwave config folder (not created here).

    ``$DRIFTWAVE_CONFIG_DIR`` when set (tests use it); otherwise platformdirs' user config
    folder for the app ``driftwave``: ``$XDG_CONFIG_HOME/driftwave``, or
    ``~/.config/driftwave`` when that is unset or empty (Linux and other Unix);
    ``~/Library/Application Support/driftwave`` (macOS); ``%APPDATA%\\driftwave``, the roaming
    profile, with no author folder (Windows). Guarded by tests/test_presets.py.
    """
    if os.environ.get("DRIFTWAVE_CONFIG_DIR"):
        return Path(os.environ["DRIFTWAVE_CONFIG_DIR"])
    return Path(platformdirs.user_config_dir("driftwave", appauthor=False, roaming=True))


def _safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9 _.-]", "_", name).strip(" .")
    if not s:
        raise ValueError("a preset needs a name")
    return s


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def save_mappings(controller: MidiController) -> Path:
    path = config_dir() / "mappings.json"
    _write_json(path, {"format_version": FORMAT_VERSION, "mappings": controller.to_json()})
    controller.dirty = False
    return path


def load_mappings(controller: MidiController) -> bool:
    """Loads the saved mappings if there are any; a broken file is an error naming it."""
    path = config_dir() / "mappings.json"
    if not path.exists():
        return False
    try:
        data = json.loads(path.read_text())
        controller.load_json(data["mappings"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"MIDI mappings file '{path}' is unreadable: {e}") from None
    controller.dirty = False
    return True


def preset_path(name: str) -> Path:
    return config_dir() / "presets" / f"{_safe_name(name)}.json"


def list_presets() -> list[str]:
    d = config_dir() / "presets"
    return sorted(p.stem for p in d.glob("*.json")) if d.exists() else []


def save_preset(name: str, bus: ControlBus, controller: MidiController | None = None,
                rack: EngineRack | None = None) -> Path:
    """The bus's parameters (the effects rack's among them), the MIDI mappings, and what
    ``rack`` holds beyond its parameters (its plugin file). ``rack``: anything with
    ``settings()`` and ``restore(settings)``: an EngineRack, or the window's
    :class:`~realtime.view.RackView`."""
    params = {k: v for k, v in bus.state().items()}
    data = {"format_version": FORMAT_VERSION, "name": name, "params": params,
            "mappings": controller.to_json() if controller is not None else None}
    if rack is not None:
        data["rack"] = rack.settings()
    path = preset_path(name)
    _write_json(path, data)
    return path


def load_preset(name: str, bus: ControlBus, controller: MidiController | None = None,
                rack: EngineRack | None = None) -> dict:
    path = preset_path(name)
    try:
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {data.get('format_version')!r} is not {FORMAT_VERSION}")
        rack_settings = data.get("rack")
        if rack_settings is not None and not (isinstance(rack_settings, dict)
                                              and isinstance(rack_settings.get("plugin_path"), (str, type(None)))):
            raise ValueError(f"its 'rack' is not {{\"plugin_path\": a file or null}}: {rack_settings!r:.80}")
        for k, v in data["params"].items():
            if k in bus.specs:
                bus.set(k, v)
        if controller is not None and data.get("mappings") is not None:
            controller.load_json(data["mappings"])
    except FileNotFoundError:
        raise ValueError(f"no preset named {name!r} in '{path.parent}'") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"preset file '{path}' is unreadable: {e}") from None
    if rack is not None and "rack" in data:     # a plugin file that no longer loads: its own line
        rack.restore(data["rack"])
    return data
