#!/usr/bin/env python3
"""Extract the uncompressed ELF vmlinux from an xz-compressed x86 bzImage.

Booting the ELF through PVH skips the in-guest xz decompression, which costs ~5 s under TCG.
Usage: extract-vmlinux.py VMLINUZ OUT
"""
import lzma
import sys

XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"


def extract(image: bytes) -> bytes:
    start = image.find(XZ_MAGIC)
    while start >= 0:
        # The compressed payload is followed by bzImage trailer bytes: decompress one stream and
        # ignore what follows it instead of parsing the setup header.
        decomp = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            out = decomp.decompress(image[start:])
        except lzma.LZMAError:
            out = b""
        if out.startswith(ELF_MAGIC):
            return out
        start = image.find(XZ_MAGIC, start + 1)
    raise SystemExit("extract-vmlinux: no xz-compressed ELF payload found (not a Debian xz bzImage?)")


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: extract-vmlinux.py VMLINUZ OUT")
    with open(sys.argv[1], "rb") as f:
        image = f.read()
    with open(sys.argv[2], "wb") as f:
        f.write(extract(image))


if __name__ == "__main__":
    main()
