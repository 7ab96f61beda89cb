"""Read silt shard datasets from Python (format 1.x; see shards/FORMAT.md). Standard library only.

    import silt_shards
    ds = silt_shards.Dataset("out/shards")
    rec = ds[0]                  # Record(id, key, label, width, height, content_type, payload)
    for rec in ds: ...

Checks what the Rust reader checks on open (magic, version, header/footer/index CRC32C, index
tiling) and each record's CRC32C when read with verify=True (the default). Payloads are
memoryviews into a memory mapping: zero copy, valid while the Dataset is open.
Run as a script to print one JSON line per record: python3 silt_shards.py DIR
"""
import json
import mmap
import os
import struct
import sys
from typing import NamedTuple, Optional

FILE_MAGIC, FOOTER_MAGIC, RECORD_TAG = b"SILTSHRD", b"SILTFOOT", b"REC1"
VERSION_MAJOR = 1
HEADER_LEN, RECORD_HEADER_LEN, INDEX_ENTRY_LEN, FOOTER_LEN = 32, 48, 16, 48
NO_LABEL = -(2 ** 63)
CONTENT_TYPES = {0: "unknown", 1: "image/jpeg", 2: "image/png", 3: "image/webp", 4: "image/gif",
                 5: "image/bmp", 6: "image/tiff", 7: "raw/u8"}


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data) -> int:
    """CRC32C (Castagnoli). Pure Python: fine for checks, slow for gigabytes."""
    crc = 0xFFFFFFFF
    for b in bytes(data):
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class ShardError(Exception):
    """A damaged or unsupported shard; the message names the file (and record)."""


class Record(NamedTuple):
    id: int
    key: str
    label: Optional[int]
    width: int
    height: int
    content_type: str
    payload: memoryview


class Shard:
    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < HEADER_LEN + FOOTER_LEN:
                raise ShardError(f"{path}: corrupt shard: file of {size} bytes is too short")
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        m = self._map
        if m[0:8] != FILE_MAGIC:
            raise ShardError(f"{path}: not a silt shard (bad magic bytes)")
        major, minor = struct.unpack_from("<HH", m, 8)
        if major != VERSION_MAJOR:
            raise ShardError(f"{path}: shard format version {major}.{minor} is not supported")
        if struct.unpack_from("<I", m, 28)[0] != crc32c(m[0:28]):
            raise ShardError(f"{path}: corrupt shard: file header checksum mismatch")
        f0 = size - FOOTER_LEN
        if m[f0 + 40:f0 + 48] != FOOTER_MAGIC:
            raise ShardError(f"{path}: corrupt shard: no footer (incomplete or truncated file)")
        if struct.unpack_from("<I", m, f0 + 36)[0] != crc32c(m[f0:f0 + 36]):
            raise ShardError(f"{path}: corrupt shard: footer checksum mismatch")
        self.index_offset, self.count, self.payload_bytes, index_crc = struct.unpack_from("<QQQI", m, f0)
        if self.index_offset + self.count * INDEX_ENTRY_LEN + FOOTER_LEN != size:
            raise ShardError(f"{path}: corrupt shard: index does not fit the file")
        if crc32c(m[self.index_offset:f0]) != index_crc:
            raise ShardError(f"{path}: corrupt shard: index checksum mismatch")
        expected = HEADER_LEN
        for i in range(self.count):
            off, ln = self._entry(i)
            if off != expected or ln < RECORD_HEADER_LEN or ln % 8:
                raise ShardError(f"{path}: corrupt shard: index entry {i} does not follow the previous record")
            expected = off + ln
        if expected != self.index_offset:
            raise ShardError(f"{path}: corrupt shard: records do not end where the index starts")

    def _entry(self, i):
        return struct.unpack_from("<QQ", self._map, self.index_offset + i * INDEX_ENTRY_LEN)

    def __len__(self):
        return self.count

    def record(self, i: int, verify: bool = True) -> Record:
        if not 0 <= i < self.count:
            raise IndexError(f"{self.path}: record {i} is out of range (the shard holds {self.count})")
        off, ln = self._entry(i)
        m = self._map
        crc, tag, rid, label, w, h, plen, klen, ctype = struct.unpack_from("<I4sQqIIQIB", m, off)
        bad = lambda what: ShardError(f"{self.path}: record {i}: {what}")
        if verify and crc != crc32c(m[off + 4:off + ln]):
            raise bad("CRC32C mismatch")
        if tag != RECORD_TAG or (RECORD_HEADER_LEN + plen + klen + 7) // 8 * 8 != ln:
            raise bad("record header does not describe its slot")
        p0 = off + RECORD_HEADER_LEN
        payload = memoryview(m)[p0:p0 + plen]
        try:
            key = m[p0 + plen:p0 + plen + klen].decode("utf-8")
        except UnicodeDecodeError:
            raise bad("key is not UTF-8") from None
        return Record(rid, key, None if label == NO_LABEL else label, w, h,
                      CONTENT_TYPES.get(ctype, f"other({ctype})"), payload)


class Dataset:
    """All shards of a manifest, addressed by one global index (manifest order)."""

    def __init__(self, directory: str):
        self.dir = directory
        with open(os.path.join(directory, "manifest.json")) as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != "silt-manifest" or self.manifest.get("version") != 1:
            raise ShardError(f"{directory}/manifest.json: not a version-1 silt manifest")
        self.shards = []
        for entry in self.manifest["shards"]:
            name = entry["file"]
            if "/" in name or name.startswith("."):
                raise ShardError(f"{directory}/manifest.json: bad shard file name {name!r}")
            shard = Shard(os.path.join(directory, name))
            if len(shard) != entry["records"]:
                raise ShardError(f"{shard.path}: manifest says {entry['records']} records, file has {len(shard)}")
            self.shards.append(shard)
        self.starts = [0]
        for s in self.shards:
            self.starts.append(self.starts[-1] + len(s))

    def __len__(self):
        return self.starts[-1]

    def __getitem__(self, g: int) -> Record:
        import bisect
        if not 0 <= g < len(self):
            raise IndexError(g)
        s = bisect.bisect_right(self.starts, g) - 1
        return self.shards[s].record(g - self.starts[s])

    def __iter__(self):
        for s in self.shards:
            for i in range(len(s)):
                yield s.record(i)


if __name__ == "__main__":
    import hashlib
    for rec in Dataset(sys.argv[1]):
        print(json.dumps({"id": rec.id, "key": rec.key, "label": rec.label, "width": rec.width,
                          "height": rec.height, "content_type": rec.content_type,
                          "bytes": len(rec.payload), "sha256": hashlib.sha256(rec.payload).hexdigest()}))
