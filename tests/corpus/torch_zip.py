"""A torch.save-shaped zip writer and a protocol-2 pickle assembler for the corrupt-file corpus.

Both reproduce Python torch.save byte for byte (make_corpus.py checks that against torch), so a
mutated file differs from a real one only where the mutation says. Nothing here reads untrusted
input: the corpus is built from values, never by loading a file.
"""
import struct
import zlib
from dataclasses import dataclass, field

ALIGNMENT = 64  # torch's kFieldAlignment: every record's data starts on a multiple of this


# ---- zip -----------------------------------------------------------------------------------------

@dataclass
class Record:
    """One zip entry. Fields left None are written the way torch.save writes them."""
    name: bytes
    data: bytes
    method: int = 0
    flags: int = 0x0808          # data descriptor + UTF-8 names, as miniz writes for torch
    crc: int | None = None       # central directory CRC (default: the real CRC of data)
    size: int | None = None      # central directory compressed = uncompressed size
    uncompressed_size: int | None = None
    local_name: bytes | None = None
    local_flags: int | None = None
    local_method: int | None = None
    local_extra: bytes | None = None  # replaces the FB padding field
    central_extra: bytes = b""
    descriptor: bool = True           # False: CRC and sizes in the local header, flag bit 3 clear
    offset: int | None = None         # central directory's local header offset (default: real)
    align: bool = True


@dataclass
class Layout:
    """Offsets of what build_zip wrote, so mutations can patch fields in place."""
    local_headers: list = field(default_factory=list)  # offset of each PK\3\4
    data_starts: list = field(default_factory=list)
    central_entries: list = field(default_factory=list)  # offset of each PK\1\2
    cd_start: int = 0
    eocd64: int = -1
    locator: int = -1
    eocd: int = 0


def padding_extra(cursor, name_len):
    """torch's getPadding: an 'FB' extra field whose filler moves the data to a 64-byte boundary."""
    start = cursor + 30 + name_len + 4
    pad = (-start) % ALIGNMENT
    return b"FB" + struct.pack("<H", pad) + b"Z" * pad


def build_zip(records, *, comment=b"", zip64_end=True, prefix=b""):
    """Writes records the way PyTorchStreamWriter does: local header (sizes deferred), data, data
    descriptor; central directory; ZIP64 end record + locator (torch always writes them); end record."""
    out = bytearray(prefix)
    layout = Layout()
    central = bytearray()
    for r in records:
        crc = zlib.crc32(r.data) if r.crc is None else r.crc
        size = len(r.data) if r.size is None else r.size
        usize = size if r.uncompressed_size is None else r.uncompressed_size
        lname = r.name if r.local_name is None else r.local_name
        if r.local_extra is not None:
            extra = r.local_extra
        else:
            extra = padding_extra(len(out), len(lname)) if r.align else b""
        offset = len(out)
        layout.local_headers.append(offset)
        local_sizes = (0, 0, 0) if r.descriptor else (crc, size & 0xFFFFFFFF, usize & 0xFFFFFFFF)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 0,
                           r.flags if r.local_flags is None else r.local_flags,
                           r.method if r.local_method is None else r.local_method,
                           0, 0, *local_sizes, len(lname), len(extra))
        out += lname + extra
        layout.data_starts.append(len(out))
        out += r.data
        if r.descriptor:
            out += struct.pack("<IIII", 0x08074B50, crc, size & 0xFFFFFFFF, usize & 0xFFFFFFFF)
        layout.central_entries.append(len(central))  # made absolute below
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, r.flags, r.method, 0, 0,
                               crc, size & 0xFFFFFFFF, usize & 0xFFFFFFFF, len(r.name),
                               len(r.central_extra), 0, 0, 0, 0,
                               (offset if r.offset is None else r.offset) & 0xFFFFFFFF)
        central += r.name + r.central_extra
    layout.cd_start = len(out)
    layout.central_entries = [layout.cd_start + o for o in layout.central_entries]
    out += central
    count = len(records)
    if zip64_end:
        layout.eocd64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x2D, 0, 0, count, count,
                           len(central), layout.cd_start)
        layout.locator = len(out)
        out += struct.pack("<IIQI", 0x07064B50, 0, layout.eocd64, 1)
    layout.eocd = len(out)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                       len(central), layout.cd_start, len(comment))
    out += comment
    return bytes(out), layout


def read_zip_records(blob):
    """Names and contents of a trusted zip (torch's own output), in file order."""
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return [(i.filename.encode(), z.read(i)) for i in z.infolist()]


def patch(blob, offset, fmt, *values):
    b = bytearray(blob)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


# ---- pickle --------------------------------------------------------------------------------------

@dataclass(eq=False)
class Storage:
    """A torch storage: persistent id ('storage', <module.cls>, key, location, numel) + the record bytes."""
    key: str
    cls: tuple          # e.g. ("torch", "FloatStorage")
    numel: object       # usually int; anything for hostile variants
    data: bytes
    location: str = "cpu"
    pid: object = None  # replaces the whole persistent id tuple


@dataclass(eq=False)
class Tensor:
    """_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())."""
    storage: Storage
    offset: object
    size: object
    stride: object
    requires_grad: object = False
    rebuild: tuple = ("torch._utils", "_rebuild_tensor_v2")
    extra_args: tuple = ()  # appended to the argument tuple (arity tests)
    args: object = None     # replaces the whole argument tuple


@dataclass(eq=False)
class Global:
    """A bare GLOBAL module name (memoized like CPython's)."""
    module: str
    name: str


@dataclass(eq=False)
class Call:
    """REDUCE(GLOBAL module name, args)."""
    module: str
    name: str
    args: tuple = ()


@dataclass(eq=False)
class Seq:
    """Several values emitted one after the other (a value followed by hostile opcodes)."""
    items: list


@dataclass(eq=False)
class Raw:
    """Opcodes spliced in verbatim where a value would go."""
    code: bytes


def encode_long(x):
    """pickle.encode_long: minimal little-endian two's complement."""
    if x == 0:
        return b""
    n = (x.bit_length() >> 3) + 1
    b = x.to_bytes(n, "little", signed=True)
    if x < 0 and n > 1 and b[-1] == 0xFF and (b[-2] & 0x80):
        b = b[:-1]
    return b


class Assembler:
    """Emits protocol-2 pickles with CPython's choices (memo numbering, SETITEM for one item,
    TUPLE1-3, BININT1/2, minimal LONG1), so that a payload assembled here equals torch.save's."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = {}

    def finish(self, value):
        self.value(value)
        self.out += b"."
        return bytes(self.out)

    def put(self, key=None):
        idx = len(self.memo)
        if key is not None:
            self.memo[key] = idx
        else:
            self.memo[("anon", idx)] = idx
        self.out += b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx)

    def get(self, key):
        idx = self.memo[key]
        self.out += b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx)

    def global_(self, module, name):
        key = ("global", module, name)
        if key in self.memo:
            self.get(key)
        else:
            self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
            self.put(key)

    def value(self, v):
        if isinstance(v, Raw):
            self.out += v.code
        elif isinstance(v, Seq):
            for item in v.items:
                self.value(item)
        elif v is None:
            self.out += b"N"
        elif v is True:
            self.out += b"\x88"
        elif v is False:
            self.out += b"\x89"
        elif isinstance(v, int):
            if 0 <= v < 256:
                self.out += b"K" + bytes([v])
            elif 0 <= v < 65536:
                self.out += b"M" + struct.pack("<H", v)
            elif -2**31 <= v < 2**31:
                self.out += b"J" + struct.pack("<i", v)
            else:
                body = encode_long(v)
                self.out += b"\x8a" + bytes([len(body)]) + body
        elif isinstance(v, float):
            self.out += b"G" + struct.pack(">d", v)
        elif isinstance(v, str):
            key = ("str", v)
            if key in self.memo:
                self.get(key)
            else:
                b = v.encode("utf-8", "surrogatepass")
                self.out += b"X" + struct.pack("<I", len(b)) + b
                self.put(key)
        elif isinstance(v, tuple):
            self.tuple_(v)
        elif isinstance(v, list):
            self.out += b"]"
            self.put()
            if len(v) == 1:
                self.value(v[0])
                self.out += b"a"
            elif v:
                self.out += b"("
                for item in v:
                    self.value(item)
                self.out += b"e"
        elif isinstance(v, dict):
            self.out += b"}"
            self.put()
            items = list(v.items())
            if len(items) == 1:
                self.value(items[0][0])
                self.value(items[0][1])
                self.out += b"s"
            elif items:
                self.out += b"("
                for k, item in items:
                    self.value(k)
                    self.value(item)
                self.out += b"u"
        elif isinstance(v, Call):
            self.global_(v.module, v.name)
            self.value(v.args)
            self.out += b"R"
            self.put()
        elif isinstance(v, Tensor):
            self.global_(*v.rebuild)
            if v.args is not None:
                self.value(v.args)
            else:
                self.tuple_((v.storage, v.offset, v.size, v.stride, v.requires_grad,
                             Call("collections", "OrderedDict")) + v.extra_args)
            self.out += b"R"
            self.put()
        elif isinstance(v, Global):
            self.global_(v.module, v.name)
        elif isinstance(v, Storage):
            self.value(v.pid if v.pid is not None
                       else ("storage", Global(*v.cls), v.key, v.location, v.numel))
            self.out += b"Q"
        else:
            raise TypeError(f"cannot assemble {type(v)}")

    def tuple_(self, t):
        if not t:
            self.out += b")"
            return
        if len(t) <= 3:
            for item in t:
                self.value(item)
            self.out += b"\x85\x86\x87"[len(t) - 1:len(t)]
        else:
            self.out += b"("
            for item in t:
                self.value(item)
            self.out += b"t"
        self.put()


def storages_in(value, found=None):
    """Storages a payload references, in first-seen order (torch's key order)."""
    found = [] if found is None else found
    if isinstance(value, Tensor):
        if all(s is not value.storage for s in found):
            found.append(value.storage)
    elif isinstance(value, dict):
        for k, v in value.items():
            storages_in(k, found)
            storages_in(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            storages_in(v, found)
    elif isinstance(value, Seq):
        storages_in(value.items, found)
    elif isinstance(value, Call):
        storages_in(value.args, found)
    return found
