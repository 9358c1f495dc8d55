"""``realtime.presets.config_dir``: the user's config folder on Linux, macOS and Windows.

macOS and Windows are checked here on any machine by handing platformdirs' own classes for
those systems to ``platformdirs.user_config_dir``; what is checked is the arguments driftwave
gives it (no author folder, the roaming profile on Windows).
"""
from pathlib import Path

import platformdirs
import platformdirs.macos
import platformdirs.unix
import platformdirs.windows
import pytest

from realtime import presets


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("DRIFTWAVE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_override_wins(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DRIFTWAVE_CONFIG_DIR", str(tmp_path / "mine"))
    assert presets.config_dir() == tmp_path / "mine"


def test_linux_xdg_config_home_then_dot_config(home, tmp_path, monkeypatch):
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.unix.Unix)
    assert presets.config_dir() == home / ".config" / "driftwave"
    monkeypatch.setenv("XDG_CONFIG_HOME", "")                 # empty counts as unset (XDG spec)
    assert presets.config_dir() == home / ".config" / "driftwave"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert presets.config_dir() == tmp_path / "xdg" / "driftwave"


def test_macos_application_support(home, monkeypatch):
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.macos.MacOS)
    assert presets.config_dir() == home / "Library" / "Application Support" / "driftwave"


def test_windows_roaming_appdata_without_author_folder(home, monkeypatch):
    folders = {"CSIDL_APPDATA": "/Users/u/AppData/Roaming", "CSIDL_LOCAL_APPDATA": "/Users/u/AppData/Local"}
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.windows.Windows)
    monkeypatch.setattr(platformdirs.windows, "get_win_folder", folders.__getitem__)
    assert presets.config_dir() == Path("/Users/u/AppData/Roaming/driftwave")

