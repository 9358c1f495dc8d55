"""What a playing session is asked for: one dataclass, filled by ``main.py`` from the command
line (the only place that knows argparse), read by :class:`~realtime.session.Session`.

Every field has the command line's default, so ``Settings(bundle=path)`` is a session as
``driftwave play --bundle path`` starts it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Settings:
    bundle: str                                 # the .dwb file to play
    # audio device
    device: int | str | None = None             # PortAudio device number or name; None: the default
    samplerate: int | None = None               # device rate wish, Hz; None: the model's rate if taken
    blocksize: int = 0                          # device block, frames; 0: the host API chooses
    device_latency: str | float = "high"        # PortAudio's suggested latency ("low", "high" or s)
    # engine
    seed: int = 0
    frames_per_step: int | str = "auto"         # mel frames per engine step (one frame: 11.6 ms); "auto":
                                                # the smallest the machine keeps up with (realtime/step_size.py)
    latency: str = "normal"                     # low, normal, safe: the ring sized from measured step times
    latency_ms: float | None = None             # a fixed ring-buffer target fill instead, ms
    realtime: bool = True                       # ask for real-time scheduling for the engine thread
    threads: int | None = None                  # torch threads; None: cores - 1
    precision: str = "float32"
    mel_match: str = "zero-latency"             # core/mel_match.py: full, low-latency, zero-latency, off
    pitch_filter: float = 0.6                   # core/pitch_filter.py's DEFAULT_STRENGTH (tests/test_pitch_filter.py); 0: off
    compute: str = "auto"                       # core/compute.py: auto, cpu, cuda[:N], mps
    compile: str = "auto"                       # core/compiled_step.py: auto (on without CUDA), on, off
    voices: int = 4                             # polyphony
    # inputs
    midi: int | str | None = None               # MIDI input port number or name
    midi_virtual: str | None = None             # open a virtual input port of this name
    midi_api: str = "default"                   # default, alsa, jack, coremidi, winmm
    reference: str | None = None                # audio file whose tokens play (token models)
    plugin: str | None = None                   # a VST3/AU file for the effects rack's plugin slot
    input: int | str | None = None              # live audio input device (number or name; realtime/audio_input.py)
    record_input: str | None = None             # WAV to record the live input into (what the engine consumed)
    pitch_follow: bool = False                  # the live input's pitch sets the pitch condition
    osc: int | None = None                      # UDP port of the OSC server (realtime/osc.py); None: off
    osc_host: str = "127.0.0.1"                 # address it listens on (localhost unless asked)
    # output
    record: str | None = None                   # WAV to record what plays into

    def but(self, **changes) -> "Settings":
        """A copy with ``changes`` (unknown names raise TypeError)."""
        return replace(self, **changes)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
