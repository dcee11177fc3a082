"""The test bed: pytest fixtures around the writeback sandbox (a real Samba AD DC and the Graph emulator)."""
