"""A tiny but well-formed MP3 file (an ID3v2 header and a few frames of silence) for fake recordings."""

from __future__ import annotations

# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding, no CRC, joint stereo: 417 bytes per frame.
_FRAME_HEADER = bytes.fromhex("fffb9064")
_FRAME_LENGTH = 144 * 128_000 // 44_100
_ID3_HEADER = b"ID3\x03\x00\x00\x00\x00\x00\x00"  # ID3v2.3, no flags, empty tag


def silent_mp3(frames: int = 8) -> bytes:
    """About 0.2 s of silence at `frames=8`; each frame lasts 1152/44100 s."""
    frame = _FRAME_HEADER + bytes(_FRAME_LENGTH - len(_FRAME_HEADER))
    return _ID3_HEADER + frame * frames
