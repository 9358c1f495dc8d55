"""Models and signal code: pure, no threads, no device I/O, no Qt/sounddevice/rtmidi."""
