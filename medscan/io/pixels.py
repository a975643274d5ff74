"""Pixel decoding: pydicom's handlers and the pylibjpeg/pyjpegls plugins, plus what they lack.

pydicom 3.0 cannot yet decode two encodings that DICOM added for segmentations: Deflated Image
Frame Compression (1.2.840.10008.1.2.8.1) and RLE Lossless of 1-bit frames. Both are simple
per-frame wrappers around native pixel data, so they are decoded here frame by frame.
"""

from __future__ import annotations

import zlib

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import unpack_bits
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"


def decode_pixels(ds: Dataset) -> np.ndarray:
    """All frames of ``ds`` as an array shaped (frames, rows, cols[, samples]) or (rows, cols[, samples])."""
    meta = ds.file_meta if hasattr(ds, "file_meta") else None
    if meta is not None and "TransferSyntaxUID" not in meta:
        # Raw (no Part-10 header) datasets are implicit little endian by definition.
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    syntax = str(meta.TransferSyntaxUID) if meta is not None else ""
    if syntax == DEFLATED_IMAGE_FRAME or (syntax == RLELossless and int(ds.get("BitsAllocated", 8)) == 1):
        return _decode_frames_ourselves(ds, syntax)
    return ds.pixel_array


def _decode_frames_ourselves(ds: Dataset, syntax: str) -> np.ndarray:
    rows, cols = int(ds.Rows), int(ds.Columns)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    bits = int(ds.BitsAllocated)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or bits not in (1, 8, 16, 32):
        raise NotImplementedError(f"{bits}-bit or multi-sample frames in transfer syntax {syntax}")
    decode = _inflate if syntax == DEFLATED_IMAGE_FRAME else _rle_single_segment
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{max(bits, 8) // 8}")
    frames = []
    for fragment in generate_frames(ds.PixelData, number_of_frames=n_frames):
        raw = decode(fragment)
        plane = unpack_bits(raw)[:rows * cols] if bits == 1 else np.frombuffer(raw, dtype=dtype, count=rows * cols)
        if plane.size != rows * cols:
            raise ValueError(f"frame holds {plane.size} pixels, expected {rows * cols}")
        frames.append(plane.reshape(rows, cols))
    array = np.stack(frames)
    return array[0] if n_frames == 1 else array


def _inflate(data: bytes) -> bytes:
    try:
        return zlib.decompress(data, -zlib.MAX_WBITS)  # raw deflate, as the standard specifies
    except zlib.error:
        return zlib.decompress(data)  # tolerate a zlib header


def _rle_single_segment(data: bytes) -> bytes:
    """RLE Lossless frame with one segment (1-bit data): 64-byte header, then PackBits runs."""
    header = np.frombuffer(data[:64], dtype="<u4")
    if header[0] != 1:
        raise ValueError(f"RLE frame with {header[0]} segments; 1-bit frames need exactly one")
    return _unpackbits_runs(data[int(header[1]):])


def _unpackbits_runs(data: bytes) -> bytes:
    out = bytearray()
    pos, end = 0, len(data)
    while pos < end:
        n = data[pos]
        pos += 1
        if n < 128:  # copy the next n+1 bytes literally
            out += data[pos:pos + n + 1]
            pos += n + 1
        elif n > 128:  # repeat the next byte 257-n times
            out += bytes([data[pos]]) * (257 - n)
            pos += 1
        # n == 128 is a no-op
    return bytes(out)
