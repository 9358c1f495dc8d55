"""Real-time parts: engine thread, ring buffer, audio output, MIDI, parameters, recorder."""
