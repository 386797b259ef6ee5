#!/usr/bin/env python3
"""Writes the corrupt/hostile sla_attention.pt corpus (checkpoint-safety.md section 7) and a few
valid files into OUT_DIR, plus OUT_DIR/corpus.json:
  [{"file", "row", "expected_codes", "expected_exit", "description", "expect"?}]
and OUT_DIR/pickles/<case>.pkl, the data.pkl of each file (seeds for fuzz_pickle.cpp).
"expect" (valid files and files a reader may accept) holds the tensor statistics torch computes.

Usage: make_corpus.py OUT_DIR

torch is used only to write the valid base files and as the oracle for them; every malformed file is
assembled from values by torch_zip (which reproduces torch.save byte for byte: checked below).
Output is deterministic (fixed seeds, no timestamps).
"""
import io
import json
import os
import struct
import sys
import tarfile
import zlib

import torch

from torch_zip import (Assembler, Call, Global, Raw, Record, Seq, Storage, Tensor, build_zip, patch,
                       read_zip_records, storages_in)

SETTINGS = {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True}
STORAGE_CLASS = {torch.float32: ("torch", "FloatStorage"), torch.bfloat16: ("torch", "BFloat16Storage"),
                 torch.float16: ("torch", "HalfStorage")}
PWNED = "/tmp/sla_corpus_pwned"  # what the hostile globals would create if anything ran them
SPARSE_SIZE = (64 << 30) + (64 << 10)  # just past the reader's 64 GiB file cap (Limits::max_file_bytes)


class Sparse:
    """A file of `size` bytes that holds `head` and then a hole (no disk space used)."""
    def __init__(self, head, size):
        self.head, self.size = head, size


# ---- payloads ------------------------------------------------------------------------------------

def payload(dims=((16, "bf16"), (8, "fp16")), seed=0):
    """A SimpleTuner-shaped dict of torch tensors (float32 proj_l per (head_dim, dtype) key)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for d, token in dims:
        state[f"{d}:{token}"] = {"proj_l.weight": torch.randn(d, d, generator=g) * 0.05,
                                 "proj_l.bias": torch.randn(d, generator=g) * 0.05}
    return {"settings": dict(SETTINGS), "state": state, "version": 1}


def tree_of(obj, storages=None):
    """The same payload as assembler values; each tensor gets its own storage (torch's key order)."""
    storages = [] if storages is None else storages
    if isinstance(obj, torch.Tensor):
        t = obj.contiguous()
        s = Storage(str(len(storages)), STORAGE_CLASS[t.dtype], t.numel(), tensor_bytes(t))
        storages.append(s)
        return Tensor(s, 0, tuple(t.shape), tuple(t.stride()))
    if isinstance(obj, dict):
        return {k: tree_of(v, storages) for k, v in obj.items()}
    return obj


def tensor_bytes(t):
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def stats(obj):
    """What `inspect --json` must report for each tensor: {key: {name: {shape, sum, min, max, abs_max}}}."""
    out = {}
    for key, entry in obj["state"].items():
        out[key] = {}
        for name, t in entry.items():
            x = t.detach().double()
            out[key][name] = {"shape": list(t.shape), "sum": x.sum().item(), "min": x.min().item(),
                              "max": x.max().item(), "abs_max": x.abs().max().item()}
    return out


def serialization_id(records):
    """40 digits, the shape torch writes (its name hash is c10::hash, not reproducible; shape is what counts)."""
    names = zlib.crc32(b"".join(r.name for r in records))
    crcs = 0
    for r in records:
        crcs = zlib.crc32(r.data, crcs)
    return f"{names:020d}{crcs:020d}".encode()


def records_for(tree, prefix="archive", pickle_bytes=None, storages=None, version=b"3\n",
                byteorder=b"little", meta=True):
    """torch.save's records for a value tree, in torch >= 2.7 order."""
    pkl = Assembler().finish(tree) if pickle_bytes is None else pickle_bytes
    storages = storages_in(tree) if storages is None else storages
    p = prefix.encode() + b"/"
    recs = [Record(p + b"data.pkl", pkl)]
    if meta:
        recs += [Record(p + b".format_version", b"1"), Record(p + b".storage_alignment", b"64")]
    if byteorder is not None:
        recs.append(Record(p + b"byteorder", byteorder))
    recs += [Record(p + b"data/" + s.key.encode(), s.data) for s in storages]
    if version is not None:
        recs.append(Record(p + b"version", version))
    if meta:
        recs.append(Record(p + b".data/serialization_id", serialization_id(recs)))
    return recs


def zip_of(tree, **kw):
    return build_zip(records_for(tree, **kw))[0]


def named(recs, suffix):
    """The record whose name ends with suffix."""
    return next(r for r in recs if r.name.endswith(suffix))


def base_tree():
    return tree_of(payload())


def hostile(top, storages=()):
    """A well-formed container around an arbitrary (hostile) pickle value tree."""
    return zip_of(top, storages=list(storages))


def raw_pickle(body):
    """A container whose data.pkl is exactly `body` (no storages)."""
    return zip_of(None, pickle_bytes=body, storages=[])


def with_version_value(value):
    """The base payload with `version` replaced by a hostile value (parsed after the tensors)."""
    t = base_tree()
    t["version"] = value
    return zip_of(t)


def weight(tree, key="16:bf16"):
    return tree["state"][key]["proj_l.weight"]


# ---- the cases -----------------------------------------------------------------------------------

CASES = []


def case(file, row, codes, description, exit_codes=(1, 2), expect=None):
    def register(make):
        CASES.append({"file": file, "row": row, "expected_codes": list(codes),
                      "expected_exit": list(exit_codes), "description": description, "make": make,
                      "expect": expect})
        return make
    return register


def corrupt(file, row, codes, description, exit_codes=(2,)):
    return case(file, row, codes, description, exit_codes)


def base_bytes():
    return zip_of(base_tree())


def base_layout():
    return build_zip(records_for(base_tree()))


BASE_STATS = stats(payload())


def register_all():
    S = "sla_attention"

    # -- valid files: guard against over-rejection (expected exit 0, values checked against torch) --
    def torch_file(obj, protocol, to_path_stem=True):
        buf = io.BytesIO()
        if to_path_stem:
            # torch.save to a path names the archive after the file stem, like SimpleTuner's files.
            import tempfile
            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "sla_attention.pt")
                torch.save(obj, p, pickle_protocol=protocol)
                return open(p, "rb").read()
        torch.save(obj, buf, pickle_protocol=protocol)
        return buf.getvalue()

    big = payload(((128, "bf16"), (64, "fp16")), seed=1)
    case("valid_simpletuner_p2.pt", 0, [], "torch.save, protocol 2, 128:bf16 + 64:fp16, archive 'sla_attention/'",
         (0,), stats(big))(lambda: torch_file(big, 2))
    case("valid_simpletuner_p4.pt", 0, [], "torch.save, protocol 4 (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE)",
         (0,), stats(big))(lambda: torch_file(big, 4))
    small = payload()
    case("valid_small_p5.pt", 0, [], "torch.save, protocol 5, 16:bf16 + 8:fp16", (0,), stats(small))(
        lambda: torch_file(small, 5))
    case("valid_buffer_archive.pt", 0, [], "torch.save to a buffer: prefix 'archive/'", (0,), stats(small))(
        lambda: torch_file(small, 2, to_path_stem=False))
    ext = payload()
    ext["sla_toolkit"] = {"variant": "complement", "writer": "corpus 1"}
    case("valid_extension_key.pt", 0, [], "our top-level 'sla_toolkit' extension key", (0,), stats(ext))(
        lambda: torch_file(ext, 2))
    case("valid_old_layout.pt", 0, [], "pre-2.1 layout: no byteorder, .format_version, .storage_alignment, "
         "serialization_id", (0,), BASE_STATS)(lambda: zip_of(base_tree(), meta=False, byteorder=None))

    def cpp_order():
        recs = records_for(base_tree())
        pkl = recs.pop(0)
        i = next(i for i, r in enumerate(recs) if b"/version" in r.name)
        return build_zip(recs[:i] + [pkl] + recs[i:])[0]
    case("valid_record_order.pt", 0, [], "storages written before data.pkl (torch::pickle_save order)", (0,),
         BASE_STATS)(cpp_order)

    def shared_storage():
        p = payload()
        w, b = p["state"]["16:bf16"]["proj_l.weight"], p["state"]["16:bf16"]["proj_l.bias"]
        s = Storage("0", STORAGE_CLASS[torch.float32], w.numel() + b.numel(),
                    tensor_bytes(torch.cat([w.flatten(), b])))
        t = tree_of(p)
        t["state"]["16:bf16"] = {"proj_l.weight": Tensor(s, 0, (16, 16), (16, 1)),
                                 "proj_l.bias": Tensor(s, 256, (16,), (1,))}
        rest = [x for x in storages_in(t) if x is not s]
        for i, x in enumerate(rest, start=1):
            x.key = str(i)
        return zip_of(t)
    case("valid_shared_storage.pt", 0, [], "weight and bias are views of one storage (offset 256)", (0,),
         BASE_STATS)(shared_storage)

    def transposed():
        p = payload()
        w = p["state"]["16:bf16"]["proj_l.weight"]
        t = tree_of(p)
        wt = w.t()  # the view stores w's bytes with strides (1, 16)
        t["state"]["16:bf16"]["proj_l.weight"] = Tensor(weight(t).storage, 0, (16, 16), (1, 16))
        weight(t).storage.data = tensor_bytes(w)
        p["state"]["16:bf16"]["proj_l.weight"] = wt
        return zip_of(t)
    tp = payload()
    tp["state"]["16:bf16"]["proj_l.weight"] = tp["state"]["16:bf16"]["proj_l.weight"].t()
    case("valid_strided_view.pt", 0, [], "non-contiguous weight (transposed view, strides (1,16))", (0,),
         stats(tp))(transposed)

    def cuda_location():
        t = base_tree()
        for s in storages_in(t):
            s.location = "cuda:0"
        return zip_of(t)
    case("valid_cuda_location.pt", 0, [], "storages saved from cuda:0 (location 'cuda:0')", (0,), BASE_STATS)(
        cuda_location)

    # -- row 1: not a zip --
    corrupt("r01_empty.pt", 1, ["E_NOT_ZIP"], "empty file")(lambda: b"")
    corrupt("r01_21_zero_bytes.pt", 1, ["E_NOT_ZIP"], "21 zero bytes (< minimal zip)")(lambda: b"\0" * 21)
    corrupt("r01_local_magic_only.pt", 1, ["E_NOT_ZIP", "E_TRUNCATED"], "just 'PK\\3\\4'")(lambda: b"PK\x03\x04")
    corrupt("r01_text.pt", 1, ["E_NOT_ZIP"], "a text file")(lambda: b"version https://git-lfs.github.com/spec/v1\n"
                                                            b"oid sha256:" + b"0" * 64 + b"\nsize 1234\n")
    corrupt("r01_7z.pt", 1, ["E_NOT_ZIP"], "7z magic (nullifAI-style wrapper)")(
        lambda: b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\0" * 56)
    corrupt("r01_empty_zip.pt", 1, ["E_NOT_ZIP", "E_MISSING_RECORD", "E_TRAILING_OR_PREFIX"],
            "a valid zip without entries")(lambda: build_zip([], zip64_end=False)[0])

    # -- row 2: legacy formats --
    def legacy():
        buf = io.BytesIO()
        torch.save(payload(), buf, _use_new_zipfile_serialization=False)
        return buf.getvalue()
    corrupt("r02_legacy_magic_pickle.pt", 2, ["E_LEGACY_FORMAT"], "torch.save(_use_new_zipfile_serialization=False)"
            " (magic-number pickle stream)")(legacy)

    def legacy_tar():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in (("sys_info", b"\x80\x02}q\x00."), ("pickle", b"\x80\x02}q\x00."),
                               ("storages", b"\x80\x02K\x00."), ("tensors", b"\x80\x02K\x00.")):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()
    corrupt("r02_legacy_tar.pt", 2, ["E_LEGACY_FORMAT", "E_NOT_ZIP"], "pre-0.4 tar format")(legacy_tar)
    corrupt("r02_pytorch1_preview.pt", 2, ["E_LEGACY_FORMAT", "E_NOT_ZIP"], "'PYTORCH1' preview magic")(
        lambda: b"PYTORCH1" + struct.pack("<Q", 4) + b"\x80\x02K\x01." + b"\0" * 16)
    corrupt("r02_bare_pickle.pt", 2, ["E_LEGACY_FORMAT", "E_NOT_ZIP"], "a bare pickle calling posix.system")(
        lambda: b"\x80\x02cposix\nsystem\nX\x0b\x00\x00\x00touch /tmp/x\x85R.")

    # -- row 3: truncated saves --
    def cut(where):
        def make():
            blob, lay = base_layout()
            return blob[:where(blob, lay)]
        return make
    corrupt("r03_cut_in_data.pt", 3, ["E_TRUNCATED"], "killed torch.save: cut inside data/0")(
        cut(lambda b, l: l.data_starts[4] + 100))
    corrupt("r03_cut_before_cd.pt", 3, ["E_TRUNCATED"], "cut right before the central directory")(
        cut(lambda b, l: l.cd_start))
    corrupt("r03_cut_in_cd.pt", 3, ["E_TRUNCATED"], "cut in the middle of the central directory")(
        cut(lambda b, l: l.cd_start + 100))
    corrupt("r03_cut_in_eocd.pt", 3, ["E_TRUNCATED"], "last 10 bytes of the end record missing")(
        cut(lambda b, l: len(b) - 10))
    corrupt("r03_cut_after_zip64_end.pt", 3, ["E_TRUNCATED"], "cut after the ZIP64 end record (no locator/EOCD)")(
        cut(lambda b, l: l.locator))
    corrupt("r03_cut_first_header.pt", 3, ["E_TRUNCATED", "E_NOT_ZIP"], "only the first 40 bytes")(
        cut(lambda b, l: 40))

    # -- row 4: records past EOF --
    def lfh_offset_past_eof():
        recs = records_for(base_tree())
        named(recs, b"data/1").offset = 1 << 30
        return build_zip(recs)[0]
    corrupt("r04_local_offset_past_eof.pt", 4, ["E_RECORD_OOB"], "central directory points data/1 past EOF")(
        lfh_offset_past_eof)

    def size_past_eof():
        recs = records_for(base_tree())
        r = named(recs, b"data/0")
        r.size = 0x7FFFFFF0
        return build_zip(recs)[0]
    corrupt("r04_size_past_eof.pt", 4, ["E_RECORD_OOB", "E_OVERLAP"], "data/0 claims 2 GiB of a 3 KB file")(
        size_past_eof)

    def name_past_cd():
        blob, lay = base_layout()
        return patch(blob, lay.central_entries[-1] + 28, "<H", 0xFFFF)
    corrupt("r04_cd_name_length_past_end.pt", 4, ["E_RECORD_OOB", "E_TRUNCATED", "E_ZIP64"],
            "last central entry's name length runs past the directory")(name_past_cd)

    def cd_offset_past_eof():
        blob, lay = base_layout()
        blob = patch(blob, lay.eocd + 16, "<I", 0x7FFFFFFF)
        return patch(blob, lay.eocd64 + 48, "<Q", 0x7FFFFFFF)
    corrupt("r04_cd_offset_past_eof.pt", 4, ["E_RECORD_OOB", "E_TRUNCATED", "E_ZIP64"],
            "end records put the central directory past EOF")(cd_offset_past_eof)

    # -- row 5: prefix, trailing bytes, comment --
    corrupt("r05_prefix_consistent.pt", 5, ["E_TRAILING_OR_PREFIX", "E_NOT_ZIP"],
            "64 bytes of GIF header before the first entry, offsets adjusted (self-extractor/polyglot)")(
        lambda: build_zip(records_for(base_tree()), prefix=b"GIF89a" + b"\0" * 58)[0])
    corrupt("r05_prefix_shifted.pt", 5, ["E_TRAILING_OR_PREFIX", "E_NOT_ZIP"],
            "17 junk bytes prepended to a valid file")(lambda: b"#!/bin/sh\nexit 0\n" + base_bytes())
    corrupt("r05_trailing_bytes.pt", 5, ["E_TRAILING_OR_PREFIX"], "17 bytes appended after the end record")(
        lambda: base_bytes() + b"appended payload!")
    corrupt("r05_trailing_zip.pt", 5, ["E_TRAILING_OR_PREFIX"], "a second zip appended")(
        lambda: base_bytes() + build_zip([Record(b"x/a", b"hello")], zip64_end=False)[0])
    corrupt("r05_zip_comment.pt", 5, ["E_TRAILING_OR_PREFIX"], "non-empty zip comment")(
        lambda: build_zip(records_for(base_tree()), comment=b"<script>alert(1)</script>")[0])

    def gap():
        blob, lay = base_layout()
        at = lay.local_headers[4]
        junk = b"J" * 64
        recs = records_for(base_tree())
        fixed = blob[:at] + junk + blob[at:]
        # shift every offset at or after the gap
        fixed = bytearray(fixed)
        for i, ce in enumerate(lay.central_entries):
            off = lay.local_headers[i]
            if off >= at:
                struct.pack_into("<I", fixed, ce + len(junk) + 42, off + len(junk))
        struct.pack_into("<I", fixed, lay.eocd + len(junk) + 16, lay.cd_start + len(junk))
        struct.pack_into("<Q", fixed, lay.eocd64 + len(junk) + 48, lay.cd_start + len(junk))
        struct.pack_into("<Q", fixed, lay.locator + len(junk) + 8, lay.eocd64 + len(junk))
        del recs
        return bytes(fixed)
    corrupt("r05_gap_between_records.pt", 5, ["E_TRAILING_OR_PREFIX", "E_OVERLAP"],
            "64 unaccounted bytes between two records (offsets consistent)")(gap)

    # -- row 6: ZIP64 lies --
    def z64(mut):
        def make():
            blob, lay = base_layout()
            return mut(blob, lay)
        return make
    corrupt("r06_locator_wrong.pt", 6, ["E_ZIP64"], "ZIP64 locator points 8 bytes into the ZIP64 end record")(
        z64(lambda b, l: patch(b, l.locator + 8, "<Q", l.eocd64 + 8)))
    corrupt("r06_count_mismatch.pt", 6, ["E_ZIP64"], "ZIP64 end record says 11 entries, end record 10")(
        z64(lambda b, l: patch(b, l.eocd64 + 24, "<QQ", 11, 11)))
    corrupt("r06_cd_offset_mismatch.pt", 6, ["E_ZIP64"], "ZIP64 and classic end records disagree on the CD offset")(
        z64(lambda b, l: patch(b, l.eocd64 + 48, "<Q", l.cd_start - 64)))
    corrupt("r06_record_size_huge.pt", 6, ["E_ZIP64"], "ZIP64 end record size field 2^63")(
        z64(lambda b, l: patch(b, l.eocd64 + 4, "<Q", 1 << 63)))
    corrupt("r06_entries_huge.pt", 6, ["E_ZIP64", "E_LIMIT"], "ZIP64 end record claims 2^40 entries")(
        z64(lambda b, l: patch(b, l.eocd64 + 24, "<QQ", 1 << 40, 1 << 40)))

    def ffff_without_record():
        recs = records_for(base_tree())
        blob, lay = build_zip(recs, zip64_end=False)
        return patch(blob, lay.eocd + 8, "<HHI", 0xFFFF, 0xFFFF, 0xFFFFFFFF)
    corrupt("r06_ffff_without_zip64.pt", 6, ["E_ZIP64", "E_TRUNCATED"],
            "end record says 0xFFFF entries / 0xFFFFFFFF size, no ZIP64 records")(ffff_without_record)

    def size_ffffffff_no_extra():
        recs = records_for(base_tree())
        r = named(recs, b"data/0")
        r.size = 0xFFFFFFFF
        return build_zip(recs)[0]
    corrupt("r06_size_ffffffff_no_extra.pt", 6, ["E_ZIP64", "E_RECORD_OOB", "E_OVERLAP"],
            "data/0 sizes 0xFFFFFFFF in the central directory without a ZIP64 extra field (#181193)")(
        size_ffffffff_no_extra)

    def zip64_extra_lies():
        recs = records_for(base_tree())
        r = named(recs, b"data/0")
        r.size = 0xFFFFFFFF
        r.central_extra = struct.pack("<HHQQ", 0x0001, 16, 1 << 62, 1 << 62)
        return build_zip(recs)[0]
    corrupt("r06_zip64_extra_huge_size.pt", 6, ["E_ZIP64", "E_RECORD_OOB", "E_LIMIT"],
            "ZIP64 extra field gives data/0 a size of 2^62")(zip64_extra_lies)

    def zip64_extra_truncated():
        recs = records_for(base_tree())
        r = named(recs, b"data/0")
        r.size = 0xFFFFFFFF
        r.central_extra = struct.pack("<HH", 0x0001, 16) + b"\0" * 4
        return build_zip(recs)[0]
    corrupt("r06_zip64_extra_truncated.pt", 6, ["E_ZIP64", "E_RECORD_OOB"],
            "ZIP64 extra field declares 16 bytes, holds 4")(zip64_extra_truncated)

    # -- row 7: local header vs central directory --
    def local(**kw):
        def make():
            recs = records_for(base_tree())
            r = named(recs, b"data/0")
            for k, v in kw.items():
                setattr(r, k, v)
            return build_zip(recs)[0]
        return make
    corrupt("r07_local_name.pt", 7, ["E_HEADER_MISMATCH"], "local header names 'archive/data/9', CD 'archive/data/0'")(
        local(local_name=b"archive/data/9"))
    corrupt("r07_local_method.pt", 7, ["E_HEADER_MISMATCH", "E_COMPRESSED"], "local header says deflate, CD stored")(
        local(local_method=8))
    corrupt("r07_local_flags.pt", 7, ["E_HEADER_MISMATCH"], "local flags 0x0800, CD 0x0808")(local(local_flags=0x0800))
    corrupt("r07_local_signature.pt", 7, ["E_HEADER_MISMATCH", "E_RECORD_OOB"], "data/1's local header signature broken")(
        z64(lambda b, l: patch(b, l.local_headers[5], "<I", 0x05034B50)))

    # -- row 8: overlap --
    def quoted_overlap():
        # Fifield's quoted overlap: data/0 (sizes in its local header, no data descriptor) declares a
        # span that runs over data/1's local header and data; CRC and sizes agree with that span.
        recs = records_for(base_tree())
        r = named(recs, b"data/0")
        r.descriptor, r.flags = False, 0x0800
        blob, lay = build_zip(recs)
        start, end = lay.data_starts[4], lay.local_headers[6]
        r.size, r.crc = end - start, zlib.crc32(blob[start:end])
        return build_zip(recs)[0]
    corrupt("r08_quoted_overlap.pt", 8, ["E_OVERLAP"], "data/0's span covers data/1's header and data")(quoted_overlap)

    def same_offset():
        blob, lay = base_layout()
        recs = records_for(base_tree())
        named(recs, b"data/1").offset = lay.local_headers[4]
        return build_zip(recs)[0]
    corrupt("r08_same_local_header.pt", 8, ["E_OVERLAP", "E_HEADER_MISMATCH"],
            "data/0 and data/1 central entries share one local header")(same_offset)

    def into_cd():
        blob, lay = base_layout()
        recs = records_for(base_tree())
        start = lay.data_starts[-1]
        r = recs[-1]
        r.size = lay.cd_start + 20 - start
        r.crc = zlib.crc32(blob[start:start + r.size])
        return build_zip(recs)[0]
    corrupt("r08_entry_into_cd.pt", 8, ["E_OVERLAP", "E_RECORD_OOB"], "last entry's data runs into the CD")(into_cd)

    # -- row 9: duplicate names --
    def dup_storage():
        recs = records_for(base_tree())
        r = named(recs, b"data/0")
        recs.insert(recs.index(r) + 1, Record(r.name, b"\x7f" * len(r.data)))
        return build_zip(recs)[0]
    corrupt("r09_duplicate_storage.pt", 9, ["E_DUP_NAME"], "two 'archive/data/0' entries with different bytes")(
        dup_storage)

    def dup_pickle():
        recs = records_for(base_tree())
        evil = Assembler().finish(Call("posix", "system", (f"touch {PWNED}",)))
        recs.insert(recs.index(recs[-1]), Record(recs[0].name, evil))
        return build_zip(recs)[0]
    corrupt("r09_duplicate_data_pkl.pt", 9, ["E_DUP_NAME"], "a second data.pkl (posix.system) later in the file")(
        dup_pickle)

    # -- row 10: compression, encryption --
    def deflated():
        recs = records_for(base_tree())
        r = recs[0]
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = c.compress(r.data) + c.flush()
        r.crc, r.uncompressed_size, r.data, r.method = zlib.crc32(r.data), len(r.data), body, 8
        return build_zip(recs)[0]
    corrupt("r10_deflated_pickle.pt", 10, ["E_COMPRESSED"], "data.pkl deflated (method 8)")(deflated)

    def bomb():
        recs = records_for(base_tree())
        r = named(recs, b"data/0")
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        r.data = c.compress(b"\0" * (1 << 20)) + c.flush()
        r.method, r.uncompressed_size, r.crc = 8, 0xFFFFFFF0, 0
        return build_zip(recs)[0]
    corrupt("r10_deflate_bomb.pt", 10, ["E_COMPRESSED"], "data/0 deflated, declares 4 GiB uncompressed")(bomb)
    corrupt("r10_encrypted.pt", 10, ["E_COMPRESSED"], "encryption flag set on data/0")(local(flags=0x0809,
                                                                                        local_flags=0x0809))
    corrupt("r10_bzip2.pt", 10, ["E_COMPRESSED"], "method 12 (bzip2) on data/0")(local(method=12, local_method=12))
    corrupt("r10_size_mismatch.pt", 10, ["E_COMPRESSED", "E_HEADER_MISMATCH"],
            "stored entry with uncompressed size != compressed size")(local(uncompressed_size=10))

    # -- row 11: CRC --
    def flip_data():
        blob, lay = base_layout()
        b = bytearray(blob)
        b[lay.data_starts[4] + 7] ^= 0x10
        return bytes(b)
    corrupt("r11_crc_data_flipped.pt", 11, ["E_CRC"], "one bit of data/0 flipped, CRC kept")(flip_data)
    corrupt("r11_crc_field_wrong.pt", 11, ["E_CRC"], "data.pkl CRC field wrong in CD and descriptor")(
        lambda: build_zip([Record(r.name, r.data, crc=(0xDEADBEEF if r.name.endswith(b"data.pkl") else None))
                           for r in records_for(base_tree())])[0])
    corrupt("r11_crc_mixed_zero.pt", 11, ["E_CRC"], "data.pkl CRC 0, all others real")(
        lambda: build_zip([Record(r.name, r.data, crc=(0 if r.name.endswith(b"data.pkl") else None))
                           for r in records_for(base_tree())])[0])
    corrupt("r11_crc_all_zero.pt", 11, ["E_CRC"], "all CRCs 0 (torch config save.compute_crc32=False), no policy flag",
            (1, 2))(lambda: build_zip([Record(r.name, r.data, crc=0) for r in records_for(base_tree())])[0])

    # -- row 12: names --
    def prefix_file(prefix):
        return lambda: zip_of(base_tree(), prefix=prefix)
    corrupt("r12_dotdot_prefix.pt", 12, ["E_BAD_NAME"], "every name starts with '../'")(prefix_file(".."))
    corrupt("r12_absolute.pt", 12, ["E_BAD_NAME", "E_MIXED_ROOT"], "names start with '/'")(prefix_file("/archive"))
    corrupt("r12_drive_letter.pt", 12, ["E_BAD_NAME"], "names start with 'C:'")(prefix_file("C:"))
    corrupt("r12_backslash.pt", 12, ["E_BAD_NAME"], "prefix 'a\\\\b'")(prefix_file("a\\b"))
    corrupt("r12_non_utf8.pt", 12, ["E_BAD_NAME"], "prefix bytes ff fe")(
        lambda: build_zip([Record(b"\xff\xfe" + r.name[7:], r.data) for r in records_for(base_tree())])[0])

    def rename(suffix, new):
        def make():
            recs = records_for(base_tree())
            named(recs, suffix).name = new
            return build_zip(recs)[0]
        return make
    corrupt("r12_nul_in_name.pt", 12, ["E_BAD_NAME"], "'archive/data/0\\0.txt'")(
        rename(b"data/0", b"archive/data/0\0.txt"))
    corrupt("r12_newline_in_name.pt", 12, ["E_BAD_NAME"], "a name with a newline and an ANSI escape: the "
            "one-line error must not break or print them raw")(
        rename(b"data/0", b"archive/data/0\nE_OK: fine\x1b[2J"))
    corrupt("r12_traversal_inside.pt", 12, ["E_BAD_NAME"], "'archive/data/../../../etc/passwd'")(
        rename(b"data/1", b"archive/data/../../../etc/passwd"))
    corrupt("r12_mixed_root.pt", 12, ["E_MIXED_ROOT"], "data/0 under 'other/', the rest under 'archive/'")(
        rename(b"data/0", b"other/data/0"))
    corrupt("r12_no_prefix.pt", 12, ["E_MIXED_ROOT", "E_BAD_NAME"], "names without a top folder ('data.pkl')")(
        lambda: build_zip([Record(r.name[8:], r.data) for r in records_for(base_tree())])[0])

    # -- row 13: unknown records, TorchScript --
    def add_record(name, data):
        def make():
            recs = records_for(base_tree())
            recs.insert(1, Record(name, data))
            return build_zip(recs)[0]
        return make
    corrupt("r13_constants_pkl.pt", 13, ["E_TORCHSCRIPT"], "an 'archive/constants.pkl' record (TorchScript)")(
        add_record(b"archive/constants.pkl", b"\x80\x02).")) 
    corrupt("r13_code_dir.pt", 13, ["E_TORCHSCRIPT", "E_UNKNOWN_RECORD"], "'archive/code/__torch__.py'")(
        add_record(b"archive/code/__torch__.py", b"import os\nos.system('true')\n"))

    def torchscript():
        class Proj(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.proj_l = torch.nn.Linear(8, 8)

            def forward(self, x):
                return self.proj_l(x)
        torch.manual_seed(0)
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(Proj()), buf)
        # torch.jit.save stamps nothing time-dependent, but re-zip to be sure of a stable layout
        return build_zip([Record(n, d) for n, d in read_zip_records(buf.getvalue())])[0]
    corrupt("r13_torchscript_module.pt", 13, ["E_TORCHSCRIPT", "E_UNKNOWN_RECORD"], "a real torch.jit.save file")(
        torchscript)
    corrupt("r13_extra_pickle.pt", 13, ["E_UNKNOWN_RECORD"], "an extra 'archive/extra.pkl'")(
        add_record(b"archive/extra.pkl", b"\x80\x02cposix\nsystem\n."))
    corrupt("r13_nested_zip.pt", 13, ["E_UNKNOWN_RECORD"], "a nested zip 'archive/inner.zip'")(
        lambda: add_record(b"archive/inner.zip", base_bytes())())
    corrupt("r13_storage_name_not_digits.pt", 13, ["E_UNKNOWN_RECORD", "E_BAD_NAME"], "'archive/data/x'")(
        add_record(b"archive/data/x", b"\0" * 8))

    # -- row 14: missing records --
    def drop(suffix):
        def make():
            return build_zip([r for r in records_for(base_tree()) if not r.name.endswith(suffix)])[0]
        return make
    corrupt("r14_no_data_pkl.pt", 14, ["E_MISSING_RECORD"], "no data.pkl")(drop(b"/data.pkl"))
    corrupt("r14_no_version.pt", 14, ["E_MISSING_RECORD"], "no version record")(drop(b"/version"))
    corrupt("r14_no_storage.pt", 14, ["E_MISSING_RECORD"], "data/2 referenced but absent")(drop(b"/data/2"))

    # -- row 15: orphan storage --
    def orphan():
        recs = records_for(base_tree())
        i = next(i for i, r in enumerate(recs) if r.name.endswith(b"/version"))
        recs.insert(i, Record(b"archive/data/4", b"\0" * 64))
        return build_zip(recs)[0]
    corrupt("r15_orphan_storage.pt", 15, ["E_ORPHAN_STORAGE"], "data/4 present, never referenced", (1, 2))(orphan)

    # -- row 16: version record --
    for name, value, desc in (("alpha", b"abc\n", "'abc'"), ("zero", b"0\n", "'0'"), ("eleven", b"11\n", "'11'"),
                              ("negative", b"-1\n", "'-1'"), ("empty", b"", "empty"),
                              ("overflow", b"99999999999999999999999\n", "23 digits")):
        corrupt(f"r16_version_{name}.pt", 16, ["E_BAD_VERSION"], f"version record {desc}")(
            (lambda v: lambda: zip_of(base_tree(), version=v))(value))
    corrupt("r16_version_10mb.pt", 16, ["E_BAD_VERSION", "E_LIMIT"], "version record of 10 MiB of digits")(
        lambda: zip_of(base_tree(), version=b"3" * (10 << 20)))

    # -- row 17: byteorder and meta records --
    corrupt("r17_byteorder_middle.pt", 17, ["E_BYTEORDER"], "byteorder 'middle'")(
        lambda: zip_of(base_tree(), byteorder=b"middle"))

    def big_endian():
        t = base_tree()
        for s in storages_in(t):
            s.data = bytes(b for i in range(0, len(s.data), 4) for b in reversed(s.data[i:i + 4]))
        return zip_of(t, byteorder=b"big")
    case("r17_byteorder_big.pt", 17, ["E_BYTEORDER"], "byteorder 'big' with byte-swapped float32 storages: "
         "read correctly or refused", (0, 2), BASE_STATS)(big_endian)

    def meta(suffix, value):
        def make():
            recs = records_for(base_tree())
            named(recs, suffix).data = value
            return build_zip(recs)[0]
        return make
    corrupt("r17_alignment_48.pt", 17, ["E_META_RECORD"], ".storage_alignment '48' (not a power of two)")(
        meta(b".storage_alignment", b"48"))
    corrupt("r17_alignment_text.pt", 17, ["E_META_RECORD"], ".storage_alignment 'abc'")(
        meta(b".storage_alignment", b"abc"))
    corrupt("r17_format_version_text.pt", 17, ["E_META_RECORD"], ".format_version 'x\\0'")(
        meta(b".format_version", b"x\0"))
    corrupt("r17_serialization_id_shape.pt", 17, ["E_META_RECORD"], ".data/serialization_id of 39 letters")(
        meta(b"serialization_id", b"a" * 39))

    # -- row 18: alignment (a reader may warn and read on) --
    case("r18_unaligned.pt", 18, ["E_ALIGN"], "records not 64-aligned (no FB padding): warn and read, or refuse",
         (0, 1, 2), BASE_STATS)(lambda: build_zip([Record(r.name, r.data, align=False)
                                                    for r in records_for(base_tree())])[0])
    case("r18_fb_extra_malformed.pt", 18, ["E_ALIGN", "E_HEADER_MISMATCH"],
         "FB extra field's inner length exceeds the extra area", (0, 1, 2), BASE_STATS)(
        lambda: build_zip([Record(r.name, r.data, local_extra=(b"FB" + struct.pack("<H", 200) + b"Z" * 8)
                                  if r.name.endswith(b"data.pkl") else None)
                           for r in records_for(base_tree())])[0])

    # -- row 19: opcodes outside the subset --
    def base_pickle():
        return Assembler().finish(base_tree())

    def pkl_file(body):
        return zip_of(base_tree(), pickle_bytes=body)
    corrupt("r19_proto6.pt", 19, ["E_PICKLE_OPCODE"], "PROTO 6")(lambda: pkl_file(b"\x80\x06" + base_pickle()[2:]))
    corrupt("r19_no_proto.pt", 19, ["E_PICKLE_OPCODE", "E_PICKLE_FRAMING"], "pickle without PROTO")(
        lambda: pkl_file(base_pickle()[2:]))
    for name, code, codes, desc in (
            ("inst", b"(X\x04\x00\x00\x00trueios\nsystem\n", ["E_PICKLE_OPCODE", "E_GLOBAL"], "INST os.system"),
            ("obj", b"(ccollections\nOrderedDict\no", ["E_PICKLE_OPCODE", "E_REDUCE"], "OBJ"),
            ("newobj_ex", b"ccollections\nOrderedDict\n)}\x92", ["E_PICKLE_OPCODE", "E_REDUCE"], "NEWOBJ_EX"),
            ("ext1", b"\x82\x01", ["E_PICKLE_OPCODE"], "EXT1"),
            ("text_persid", b"P0\n", ["E_PICKLE_OPCODE", "E_PERSID"], "text PERSID"),
            ("string", b"S'abc'\n", ["E_PICKLE_OPCODE"], "protocol-0 STRING"),
            ("next_buffer", b"\x97", ["E_PICKLE_OPCODE"], "NEXT_BUFFER (out-of-band)"),
            ("undefined", b"\xff", ["E_PICKLE_OPCODE"], "undefined opcode 0xff")):
        corrupt(f"r19_{name}.pt", 19, codes, f"{desc} as the version value")(
            (lambda c: lambda: with_version_value(Raw(c)))(code))

    # -- row 20: globals outside the allowlist (never resolved) --
    for name, value, codes, desc in (
            ("posix_system", Call("posix", "system", (f"touch {PWNED}",)), ["E_GLOBAL"], "posix.system('touch ...')"),
            ("builtins_eval", Call("builtins", "eval", (f"open('{PWNED}','w')",)), ["E_GLOBAL"], "builtins.eval"),
            ("main_x", Call("__main__", "X", ()), ["E_GLOBAL"], "__main__.X()"),
            ("subprocess", Call("subprocess", "check_output", (["touch", PWNED],)), ["E_GLOBAL"], "subprocess"),
            ("stack_global", Raw(b"X\x05\x00\x00\x00posixX\x06\x00\x00\x00system\x93X\x04\x00\x00\x00true\x85R"),
             ["E_GLOBAL", "E_PICKLE_OPCODE"], "STACK_GLOBAL posix.system"),
            ("global_unterminated", Raw(b"cposix\nsystem"), ["E_GLOBAL", "E_PICKLE_FRAMING", "E_STRING"],
             "GLOBAL without its closing newline")):
        corrupt(f"r20_{name}.pt", 20, codes, f"{desc} as the version value")(
            (lambda v: lambda: with_version_value(v))(value))

    def restore_type_tag():
        t = base_tree()
        t["state"] = Call("torch.jit._pickle", "restore_type_tag", (t["state"], "Dict[str, Dict[str, Tensor]]"))
        return zip_of(t)
    corrupt("r20_restore_type_tag.pt", 20, ["E_GLOBAL"], "torch.jit._pickle.restore_type_tag around state "
            "(torch::pickle_save shape)")(restore_type_tag)

    def storage_class(cls):
        def make():
            t = base_tree()
            weight(t).storage.cls = cls
            return zip_of(t)
        return make
    corrupt("r20_fake_storage.pt", 20, ["E_GLOBAL", "E_PERSID"], "storage class 'torch FakeStorage'")(
        storage_class(("torch", "FakeStorage")))
    corrupt("r20_os_system_storage.pt", 20, ["E_GLOBAL", "E_PERSID"], "storage class slot holds os.system")(
        storage_class(("os", "system")))

    # -- row 21: REDUCE/NEWOBJ/BUILD --
    def settings_value(v):
        def make():
            t = base_tree()
            t["settings"] = v
            return zip_of(t)
        return make
    corrupt("r21_ordereddict_args.pt", 21, ["E_REDUCE"], "OrderedDict REDUCE with items")(
        settings_value(Call("collections", "OrderedDict", ([("topk", 0.2)],))))
    corrupt("r21_reduce_string.pt", 21, ["E_REDUCE"], "REDUCE on a string")(
        lambda: with_version_value(Raw(b"X\x03\x00\x00\x00abc)R")))
    corrupt("r21_reduce_storage_class.pt", 21, ["E_REDUCE"], "torch.FloatStorage(16) via REDUCE")(
        lambda: with_version_value(Call("torch", "FloatStorage", (16,))))
    corrupt("r21_newobj.pt", 21, ["E_REDUCE", "E_PICKLE_OPCODE"], "NEWOBJ of OrderedDict")(
        lambda: with_version_value(Raw(b"ccollections\nOrderedDict\n)\x81")))

    def build_on_tensor():
        t = base_tree()
        t["state"]["16:bf16"]["proj_l.weight"] = Seq([weight(t), Raw(b"}X\x01\x00\x00\x00xK\x01sb")])
        return zip_of(t)
    corrupt("r21_build_on_tensor.pt", 21, ["E_REDUCE", "E_PICKLE_OPCODE"], "BUILD {'x': 1} onto a tensor")(
        build_on_tensor)
    corrupt("r21_build_on_string.pt", 21, ["E_REDUCE", "E_PICKLE_OPCODE"], "BUILD onto a string")(
        lambda: with_version_value(Raw(b"X\x01\x00\x00\x00a}b")))

    # -- row 22: framing --
    corrupt("r22_no_stop.pt", 22, ["E_PICKLE_FRAMING"], "pickle ends without STOP")(
        lambda: pkl_file(base_pickle()[:-1]))
    corrupt("r22_bytes_after_stop.pt", 22, ["E_PICKLE_FRAMING"], "one byte after STOP")(
        lambda: pkl_file(base_pickle() + b"N"))
    corrupt("r22_second_pickle.pt", 22, ["E_PICKLE_FRAMING"], "a second pickle (posix.system) after STOP")(
        lambda: pkl_file(base_pickle() + Assembler().finish(Call("posix", "system", (f"touch {PWNED}",)))))
    corrupt("r22_empty_pickle.pt", 22, ["E_PICKLE_FRAMING", "E_MISSING_RECORD"], "data.pkl of 0 bytes")(
        lambda: raw_pickle(b""))
    corrupt("r22_stop_on_empty_stack.pt", 22, ["E_PICKLE_FRAMING", "E_PICKLE_STACK"], "PROTO 2, STOP")(
        lambda: raw_pickle(b"\x80\x02."))

    # -- row 23: stack and memo --
    corrupt("r23_stack_underflow.pt", 23, ["E_PICKLE_STACK"], "REDUCE on an empty stack")(
        lambda: raw_pickle(b"\x80\x02R."))
    corrupt("r23_mark_unclosed.pt", 23, ["E_PICKLE_STACK", "E_PICKLE_FRAMING"], "an open MARK at STOP")(
        lambda: pkl_file(base_pickle()[:-1] + b"(."))
    corrupt("r23_setitems_without_mark.pt", 23, ["E_PICKLE_STACK"], "SETITEMS with no MARK")(
        lambda: raw_pickle(b"\x80\x02}X\x01\x00\x00\x00aK\x01u."))
    corrupt("r23_two_values_at_stop.pt", 23, ["E_PICKLE_STACK", "E_PICKLE_FRAMING"], "two values left at STOP")(
        lambda: raw_pickle(b"\x80\x02NN."))

    def binget_unset():
        body = bytearray(base_pickle())
        at = body.index(b"h\x0e")  # first reuse of the _rebuild_tensor_v2 global
        body[at + 1] = 200
        return pkl_file(bytes(body))
    corrupt("r23_binget_unset.pt", 23, ["E_MEMO"], "BINGET 200 of an unset memo slot")(binget_unset)
    corrupt("r23_memo_bomb_put.pt", 23, ["E_MEMO", "E_LIMIT"], "LONG_BINPUT 2^32-1 (memo bomb)")(
        lambda: with_version_value(Raw(b"K\x01r\xff\xff\xff\xff")))
    corrupt("r23_memo_bomb_get.pt", 23, ["E_MEMO"], "LONG_BINGET 2^32-1")(
        lambda: with_version_value(Raw(b"j\xff\xff\xff\xff")))

    # -- row 24: container ops on the wrong type (CVE-2026-24747 class) --
    for name, code, desc in (
            ("setitems_on_list", b"](X\x01\x00\x00\x00aK\x01u", "SETITEMS onto a list"),
            ("setitem_on_tuple", b"K\x01\x85X\x01\x00\x00\x00aK\x01s", "SETITEM onto a tuple"),
            ("append_on_dict", b"}K\x01a", "APPEND onto a dict"),
            ("appends_on_tuple", b")(K\x01e", "APPENDS onto an empty tuple"),
            ("setitem_on_string", b"X\x01\x00\x00\x00aX\x01\x00\x00\x00bK\x01s", "SETITEM onto a string")):
        corrupt(f"r24_{name}.pt", 24, ["E_CONTAINER_OP"], f"{desc} (as the version value)")(
            (lambda c: lambda: with_version_value(Raw(c)))(code))

    def setitems_on_tensor():
        t = base_tree()
        t["state"]["16:bf16"]["proj_l.weight"] = Seq([weight(t), Raw(b"(X\x01\x00\x00\x00aK\x01u")])
        return zip_of(t)
    corrupt("r24_setitems_on_tensor.pt", 24, ["E_CONTAINER_OP"], "SETITEMS onto a rebuilt tensor")(setitems_on_tensor)

    # -- row 25: strings --
    def feature_map(code):
        return settings_value(Raw(b"}(X\x04\x00\x00\x00topkG?\xc9\x99\x99\x99\x99\x99\x9aX\x0b\x00\x00\x00feature_map"
                                  + code + b"u"))
    corrupt("r25_length_past_end.pt", 25, ["E_STRING", "E_PICKLE_FRAMING", "E_LIMIT"],
            "BINUNICODE length 0xfffffff0")(lambda: with_version_value(Raw(b"X\xf0\xff\xff\xffabc")))
    corrupt("r25_invalid_utf8.pt", 25, ["E_STRING"], "BINUNICODE bytes ff fe")(
        feature_map(b"X\x02\x00\x00\x00\xff\xfe"))
    corrupt("r25_surrogate.pt", 25, ["E_STRING"], "UTF-8-encoded surrogate ed a0 80")(
        feature_map(b"X\x03\x00\x00\x00\xed\xa0\x80"))
    corrupt("r25_overlong.pt", 25, ["E_STRING"], "overlong UTF-8 c0 af")(feature_map(b"X\x02\x00\x00\x00\xc0\xaf"))
    corrupt("r25_binunicode8_huge.pt", 25, ["E_STRING", "E_LIMIT", "E_PICKLE_OPCODE", "E_PICKLE_FRAMING"],
            "BINUNICODE8 length 2^62")(lambda: with_version_value(Raw(b"\x8d" + struct.pack("<Q", 1 << 62))))

    def huge_key():
        t = base_tree()
        t["state"]["k" * (2 << 20)] = t["state"].pop("8:fp16")
        return zip_of(t)
    case("r25_huge_key.pt", 25, ["E_STRING", "E_LIMIT", "E_SCHEMA"], "a 2 MiB state key")(huge_key)

    # -- row 26: depth --
    n = 100_000
    corrupt("r26_nested_lists.pt", 26, ["E_DEPTH", "E_PICKLE_STACK", "E_LIMIT"], "100k lists nested by APPEND")(
        lambda: raw_pickle(b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."))
    corrupt("r26_nested_tuples.pt", 26, ["E_DEPTH", "E_LIMIT"], "100k TUPLE1 around an empty tuple (flat stack)")(
        lambda: raw_pickle(b"\x80\x02)" + b"\x85" * n + b"."))
    corrupt("r26_nested_dicts.pt", 26, ["E_DEPTH", "E_PICKLE_STACK", "E_LIMIT"], "100k dicts nested by SETITEM")(
        lambda: raw_pickle(b"\x80\x02}" + b"K\x00}" * n + b"s" * n + b"."))
    corrupt("r26_marks.pt", 26, ["E_DEPTH", "E_PICKLE_STACK", "E_LIMIT"], "100k MARKs")(
        lambda: raw_pickle(b"\x80\x02" + b"(" * n + b")" + b"t" * n + b"."))
    case("r26_self_list.pt", 26, ["E_SCHEMA", "E_DEPTH", "E_CONTAINER_OP", "E_MEMO"],
         "a list that contains itself (memo cycle)")(lambda: raw_pickle(b"\x80\x02]q\x00h\x00a."))
    case("r26_self_dict.pt", 26, ["E_SCHEMA", "E_DEPTH", "E_CONTAINER_OP", "E_MEMO"],
         "settings dict that contains itself")(
        lambda: raw_pickle(b"\x80\x02}q\x00X\x08\x00\x00\x00settingsh\x00s."))

    # -- row 27: persistent ids --
    def pid(mutate):
        def make():
            t = base_tree()
            mutate(t)
            return zip_of(t)
        return make

    def set_storage(**kw):
        def mutate(t):
            for k, v in kw.items():
                setattr(weight(t).storage, k, v)
        return mutate
    corrupt("r27_tag.pt", 27, ["E_PERSID"], "persistent id tag 'storagex'")(
        pid(set_storage(pid=("storagex", Global("torch", "FloatStorage"), "0", "cpu", 256))))
    def pid_key_traversal():
        t = base_tree()
        recs = records_for(t)
        weight(t).storage.key = "../../etc/passwd"
        recs[0].data = Assembler().finish(t)
        return build_zip(recs)[0]
    corrupt("r27_key_traversal.pt", 27, ["E_PERSID", "E_MISSING_RECORD"], "storage key '../../etc/passwd'")(
        pid_key_traversal)
    corrupt("r27_location_tpu.pt", 27, ["E_PERSID"], "location 'tpu'")(pid(set_storage(location="tpu")))
    corrupt("r27_location_cuda_x.pt", 27, ["E_PERSID"], "location 'cuda:x'")(pid(set_storage(location="cuda:x")))
    corrupt("r27_numel_str.pt", 27, ["E_PERSID", "E_TYPE"], "numel '256' (a string)")(pid(set_storage(numel="256")))
    corrupt("r27_short_tuple.pt", 27, ["E_PERSID"], "4-element persistent id")(
        pid(set_storage(pid=("storage", Global("torch", "FloatStorage"), "0", "cpu"))))
    corrupt("r27_int_pid.pt", 27, ["E_PERSID"], "persistent id 0 (int)")(pid(set_storage(pid=0)))
    corrupt("r27_str_pid.pt", 27, ["E_PERSID"], "persistent id 'storage' (a string)")(pid(set_storage(pid="storage")))
    corrupt("r27_key_int.pt", 27, ["E_PERSID", "E_TYPE"], "storage key 0 as an int")(
        pid(set_storage(pid=("storage", Global("torch", "FloatStorage"), 0, "cpu", 256))))

    def key_reused():
        t = base_tree()
        entry = t["state"]["16:bf16"]
        recs = records_for(t)  # storages 0..3 as usual
        alias = Storage(weight(t).storage.key, ("torch", "HalfStorage"), 16, b"")
        entry["proj_l.bias"] = Tensor(alias, 0, (16,), (1,))
        recs[0].data = Assembler().finish(t)
        return build_zip([r for r in recs if not r.name.endswith(b"/data/1")])[0]
    corrupt("r27_key_reused_other_dtype.pt", 27, ["E_PERSID"], "storage key '0' used as Float and as Half")(key_reused)

    # -- row 28: storage sizes --
    def storage_size(numel=None, data=None):
        def make():
            t = base_tree()
            s = weight(t).storage
            if numel is not None:
                s.numel = numel
            if data is not None:
                s.data = data(s.data)
            return zip_of(t)
        return make
    corrupt("r28_record_short.pt", 28, ["E_STORAGE_SIZE"], "data/0 4 bytes shorter than numel*4")(
        storage_size(data=lambda d: d[:-4]))
    corrupt("r28_record_long.pt", 28, ["E_STORAGE_SIZE"], "data/0 4 bytes longer than numel*4")(
        storage_size(data=lambda d: d + b"\0" * 4))
    corrupt("r28_record_empty.pt", 28, ["E_STORAGE_SIZE"], "data/0 empty, numel 256")(storage_size(data=lambda d: b""))
    corrupt("r28_numel_negative.pt", 28, ["E_STORAGE_SIZE", "E_PERSID"], "numel -1")(storage_size(numel=-1))
    corrupt("r28_numel_overflow.pt", 28, ["E_STORAGE_SIZE", "E_LIMIT"], "numel 2^62 (numel*4 overflows int64)")(
        storage_size(numel=1 << 62))
    corrupt("r28_numel_huge.pt", 28, ["E_STORAGE_SIZE", "E_LIMIT"], "numel 2^40 over a 1 KiB record")(
        storage_size(numel=1 << 40))

    # -- row 29: tensor geometry --
    def geometry(**kw):
        def make():
            t = base_tree()
            w = weight(t)
            for k, v in kw.items():
                setattr(w, k, v)
            return zip_of(t)
        return make
    def geometry_args(args):
        def make():
            t = base_tree()
            w = weight(t)
            w.args = args(w)
            return zip_of(t)
        return make
    corrupt("r29_arity5.pt", 29, ["E_TENSOR_GEOMETRY"], "_rebuild_tensor_v2 with 5 args")(
        geometry_args(lambda w: (w.storage, 0, (16, 16), (16, 1), False)))
    corrupt("r29_arity8.pt", 29, ["E_TENSOR_GEOMETRY"], "_rebuild_tensor_v2 with 8 args")(
        geometry(extra_args=(None, None)))
    corrupt("r29_size_list.pt", 29, ["E_TENSOR_GEOMETRY", "E_TYPE"], "size as a list")(geometry(size=[16, 16]))
    corrupt("r29_negative_dim.pt", 29, ["E_TENSOR_GEOMETRY"], "size (-16, 16)")(geometry(size=(-16, 16)))
    corrupt("r29_negative_stride.pt", 29, ["E_TENSOR_GEOMETRY"], "stride (-16, 1)")(geometry(stride=(-16, 1)))
    corrupt("r29_negative_offset.pt", 29, ["E_TENSOR_GEOMETRY"], "storage offset -1")(geometry(offset=-1))
    corrupt("r29_offset_past_storage.pt", 29, ["E_TENSOR_GEOMETRY"], "offset 1: extent 257 > numel 256")(
        geometry(offset=1))
    corrupt("r29_extent_past_storage.pt", 29, ["E_TENSOR_GEOMETRY"], "size (16, 32) over 256 elements")(
        geometry(size=(16, 32), stride=(32, 1)))
    corrupt("r29_rank_mismatch.pt", 29, ["E_TENSOR_GEOMETRY"], "size rank 2, stride rank 1")(geometry(stride=(1,)))
    corrupt("r29_size_product_overflow.pt", 29, ["E_TENSOR_GEOMETRY"], "size (2^40, 2^40)")(
        geometry(size=(1 << 40, 1 << 40), stride=(1 << 40, 1)))
    corrupt("r29_stride_overflow.pt", 29, ["E_TENSOR_GEOMETRY"], "stride (2^62, 1) for size (2, 2)")(
        geometry(size=(2, 2), stride=(1 << 62, 1)))
    case("r29_zero_size_weight.pt", 29, ["E_SCHEMA"], "weight of size (0, 16): no elements (fuzz finding: memcpy of "
         "nothing from null)", (1,))(geometry(size=(0, 16), stride=(16, 1)))
    # issue 11: a tiny storage presenting a huge tensor would cost numel, not the bytes stored
    corrupt("r29_stride0.pt", 29, ["E_TENSOR_GEOMETRY"], "size (2^20, 2^20), stride (0, 0) over 256 elements")(
        geometry(size=(1 << 20, 1 << 20), stride=(0, 0)))
    corrupt("r29_overlapping_strides.pt", 29, ["E_TENSOR_GEOMETRY"], "size (2, 240), stride (1, 1): 480 elements over 256")(
        geometry(size=(2, 240), stride=(1, 1)))

    # -- row 30: types --
    corrupt("r30_long1_9_bytes.pt", 30, ["E_TYPE"], "LONG1 of 9 bytes (beyond int64) as version")(
        lambda: with_version_value(2 ** 70))
    corrupt("r30_long4.pt", 30, ["E_TYPE", "E_PICKLE_OPCODE"], "LONG4 of 16 bytes as version")(
        lambda: with_version_value(Raw(b"\x8b\x10\x00\x00\x00" + b"\x01" * 16)))
    corrupt("r30_requires_grad_int.pt", 30, ["E_TYPE", "E_TENSOR_GEOMETRY"], "requires_grad 0 (int)")(
        geometry(requires_grad=0))
    corrupt("r30_offset_str.pt", 30, ["E_TYPE", "E_TENSOR_GEOMETRY"], "storage offset '0'")(geometry(offset="0"))
    corrupt("r30_size_float.pt", 30, ["E_TYPE", "E_TENSOR_GEOMETRY"], "size (16.0, 16.0)")(
        geometry(size=(16.0, 16.0)))

    def schema(mutate, codes=("E_SCHEMA",), exits=(1,)):
        def make():
            t = base_tree()
            mutate(t)
            return zip_of(t)
        return make, list(codes), exits

    def settings_set(k, v):
        return lambda t: t["settings"].__setitem__(k, v)
    for name, (make, codes, exits), desc in (
            ("blkq_str", schema(settings_set("blkq", "64"), ("E_TYPE", "E_SCHEMA"), (1, 2)), "settings blkq '64'"),
            ("version_float", schema(lambda t: t.__setitem__("version", 1.0), ("E_TYPE", "E_SCHEMA"), (1, 2)),
             "version 1.0")):
        case(f"r30_{name}.pt", 30, codes, desc, exits)(make)

    # -- row 31: schema (readable, exit 1) --
    def state_entry(f):
        return lambda t: f(t["state"]["16:bf16"])

    def retype_weight(t):
        w = weight(t)
        w.storage.cls = ("torch", "BFloat16Storage")
        w.storage.data = w.storage.data[:512]
    rows31 = (
        ("top_list", lambda t: None, "top level is a list", (1, 2)),
        ("missing_settings", lambda t: t.pop("settings"), "no 'settings'", (1,)),
        ("missing_state", lambda t: t.pop("state"), "no 'state'", (1,)),
        ("version_2", lambda t: t.__setitem__("version", 2), "version 2", (1,)),
        ("key_grammar", lambda t: t["state"].__setitem__("abc", t["state"].pop("8:fp16")), "state key 'abc'", (1,)),
        ("key_head_dim", lambda t: t["state"].__setitem__("32:fp16", t["state"].pop("8:fp16")),
         "key 32:fp16 over 8x8 tensors", (1,)),
        ("weight_bf16", retype_weight, "proj_l.weight stored as bfloat16", (1,)),
        ("missing_bias", state_entry(lambda e: e.pop("proj_l.bias")), "no proj_l.bias", (1,)),
        ("extra_tensor", state_entry(lambda e: e.__setitem__("proj_l.extra", e["proj_l.bias"])),
         "extra proj_l.extra", (1,)),
        ("extra_tensor_first", state_entry(lambda e: e.update({"proj_l.extra": e["proj_l.weight"]}) or
                                           e.update({"proj_l.bias": e.pop("proj_l.bias")})),
         "extra proj_l.extra (16x16) between weight and bias", (1,)),
        ("extra_tensor_last", state_entry(lambda e: e.__setitem__("proj_l.extra", e["proj_l.weight"])),
         "extra proj_l.extra (16x16) after bias: must not replace the bias values (fuzz finding)", (1,)),
        ("bias_shape", state_entry(lambda e: setattr(e["proj_l.bias"], "size", (15,))), "bias [15] for D=16", (1,)),
        ("weight_shape", state_entry(lambda e: (setattr(e["proj_l.weight"], "size", (16, 15)),
                                                setattr(e["proj_l.weight"], "stride", (15, 1)))),
         "weight [16, 15]", (1,)),
        ("settings_extra_key", settings_set("blkq_extra", 1), "extra key in settings", (1,)),
        ("topk_range", settings_set("topk", 2.0), "topk 2.0", (1,)),
        ("feature_map", settings_set("feature_map", "tanh"), "feature_map 'tanh'", (1,)),
        ("blkq_value", settings_set("blkq", 48), "blkq 48", (1,)))
    def top_list():
        t = base_tree()
        return zip_of(t, pickle_bytes=Assembler().finish([t["settings"], t["state"], 1]))
    # Forward compatibility (issue 17): what SimpleTuner reads without complaint is a warning, the file valid.
    compat31 = {"version_2", "extra_tensor", "extra_tensor_first", "extra_tensor_last", "settings_extra_key"}
    for name, mutate, desc, exits in rows31:
        make = top_list if name == "top_list" else schema(mutate)[0]
        if name in compat31:
            case(f"r31_{name}.pt", 31, ["W_COMPAT"], desc + " (a forward-compatibility warning)", (0,))(make)
        else:
            case(f"r31_{name}.pt", 31, ["E_SCHEMA"], desc, exits)(make)

    # -- row 32: values --
    def values(put):
        def make():
            p = payload()
            put(p["state"]["16:bf16"])
            return zip_of(tree_of(p))
        return make
    case("r32_nan_weight.pt", 32, ["E_VALUES"], "NaN in proj_l.weight", (1,))(
        values(lambda e: e["proj_l.weight"].__setitem__((3, 4), float("nan"))))
    case("r32_inf_bias.pt", 32, ["E_VALUES"], "-inf in proj_l.bias", (1,))(
        values(lambda e: e["proj_l.bias"].__setitem__(5, float("-inf"))))
    case("r32_requires_grad.pt", 32, ["E_VALUES"], "requires_grad True (warn or problem)", (0, 1), BASE_STATS)(
        geometry(requires_grad=True))

    # -- row 33: sparse/quantized/meta/subclass rebuilds --
    for fn in (("torch._utils", "_rebuild_sparse_tensor"), ("torch._tensor", "_rebuild_from_type_v2"),
               ("torch._utils", "_rebuild_qtensor"), ("torch._utils", "_rebuild_meta_tensor_no_storage"),
               ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_wrapper_subclass"),
               ("torch._utils", "_rebuild_device_tensor_from_numpy")):
        corrupt(f"r33_{fn[1].lstrip('_')}.pt", 33, ["E_GLOBAL"], f"proj_l.weight rebuilt by {fn[0]}.{fn[1]}")(
            geometry(rebuild=fn))

    # -- row 34: caps (before allocation) --
    def many_records():
        recs = records_for(base_tree())
        filler = [Record(f"archive/data/{i}".encode(), b"", align=False) for i in range(4, 70_004)]
        i = next(i for i, r in enumerate(recs) if r.name.endswith(b"/version"))
        return build_zip(recs[:i] + filler + recs[i:])[0]
    corrupt("r34_70000_records.pt", 34, ["E_LIMIT"], "70,004 records (ZIP64 counts)")(many_records)
    corrupt("r34_pickle_65mib.pt", 34, ["E_LIMIT"], "a 65 MiB data.pkl (cap 64 MiB)")(
        lambda: pkl_file(b"\x80\x02X" + struct.pack("<I", 65 << 20) + b"s" * (65 << 20) + b"."))
    # issue 11: entry counts, and values shared through the memo (one object, paid per reference)
    def many_entries():
        t = base_tree()
        t["state"].update({f"{d}:fp32": {} for d in range(100, 1200)})
        return zip_of(t)
    corrupt("r34_1100_state_entries.pt", 34, ["E_LIMIT"], "1,100 state entries (cap 1024)")(many_entries)

    def shared_entry(refs, d=16):
        def make():
            t = tree_of(payload(dims=((d, "bf16"),)))
            shared = t["state"][f"{d}:bf16"]
            t["state"] = {f"{d}:bf16": Seq([shared, Raw(b"r" + struct.pack("<I", 200_000))])}
            t["state"].update({f"{d}:t{i}": Raw(b"j" + struct.pack("<I", 200_000)) for i in range(refs)})
            return zip_of(t)
        return make
    case("r23_memo_shared_entry.pt", 23, ["E_SCHEMA"], "one 16x16 entry referenced by 4 keys (BINGET): answered",
         (0, 1))(shared_entry(3))
    corrupt("r34_memo_fanout_entry.pt", 34, ["E_LIMIT"], "one 2.7 MB entry referenced by 100 keys (270 MB expanded)")(
        shared_entry(99, d=820))

    def shared_string():
        t = base_tree()
        ext = {"writer": Seq(["w" * ((1 << 20) - 16), Raw(b"r" + struct.pack("<I", 200_000))])}
        ext.update({f"k{i}": Raw(b"j" + struct.pack("<I", 200_000)) for i in range(100)})
        t["sla_toolkit"] = ext
        return zip_of(t)
    corrupt("r34_memo_fanout_string.pt", 34, ["E_LIMIT"], "one 1 MiB string referenced 100 times")(shared_string)
    case("r31_head_dim_999999.pt", 31, ["E_SCHEMA"], "state key 999999:fp16 (head_dim above 4096)", (1,))(
        schema(lambda t: t["state"].__setitem__("999999:fp16", t["state"].pop("8:fp16")))[0])
    case("r25_control_chars.pt", 25, [], "writer string with a newline, a forged 'verify: ok' and an OSC escape",
         (0,), BASE_STATS)(
        lambda: zip_of({**base_tree(), "sla_toolkit": {"writer": "x\n verify: ok\x1b]0;x\x07"}}))
    corrupt("r34_file_64gib_sparse.pt", 34, ["E_LIMIT"], f"a sparse file of {SPARSE_SIZE} bytes "
            "(> the 64 GiB file cap): refused from its size, nothing read or mapped")(
        lambda: Sparse(base_bytes(), SPARSE_SIZE))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUT_DIR")
    out = sys.argv[1]
    self_check()
    register_all()
    os.makedirs(os.path.join(out, "pickles"), exist_ok=True)
    manifest = []
    for c in CASES:
        blob = c["make"]()
        path = os.path.join(out, c["file"])
        with open(path, "wb") as f:
            if isinstance(blob, Sparse):
                f.write(blob.head)
                f.truncate(blob.size)
            else:
                f.write(blob)
        if c["expected_exit"] == [0]:
            if c["expect"] is None and "W_COMPAT" in c["expected_codes"]:
                # valid with a forward-compatibility warning: the statistics are torch's (extra tensors included)
                c["expect"] = stats(torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu"))
            check_valid(blob, c)
        write_pickle_seed(blob, os.path.join(out, "pickles", c["file"][:-3] + ".pkl"))
        entry = {k: c[k] for k in ("file", "row", "expected_codes", "expected_exit", "description")}
        if c["expect"] is not None:
            entry["expect"] = c["expect"]
        manifest.append(entry)
    write_safetensors_seeds(os.path.join(out, "safetensors"))
    with open(os.path.join(out, "corpus.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    rows = sorted({c["row"] for c in CASES})
    print(f"make_corpus: {len(CASES)} files, rows {rows} -> {out}", file=sys.stderr)


def safetensors_blob(tensors, metadata=None, header_text=None):
    """tensors: [(name, dtype, shape, data bytes)], laid out contiguously from offset 0."""
    header, offset, data = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        data += blob
    text = header_text if header_text is not None else json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write_safetensors_seeds(folder):
    """Seeds for the safetensors header fuzz target (fuzz_safetensors.cpp): a valid SLA twin, its
    hostile variants (issue 11: tensor counts, nesting, duplicates) and a model weights header."""
    os.makedirs(folder, exist_ok=True)
    meta = {"format": "sla_attention", "version": "1", "settings": json.dumps(SETTINGS)}
    f32 = lambda n: struct.pack(f"<{n}f", *(0.01 * (i % 13 - 6) for i in range(n)))
    twin = []
    for d, token in ((16, "bf16"), (8, "fp16")):
        twin += [(f"{d}:{token}/proj_l.weight", "F32", (d, d), f32(d * d)), (f"{d}:{token}/proj_l.bias", "F32", (d,), f32(d))]
    many = []
    for i in range(1, 1101):
        many += [(f"{i}:fp32/proj_l.weight", "F32", (1, 1), f32(1)), (f"{i}:fp32/proj_l.bias", "F32", (1,), f32(1))]
    seeds = {
        "twin_valid": safetensors_blob(twin, meta),
        "twin_2200_tensors": safetensors_blob(many, meta),
        "twin_duplicate_key": safetensors_blob([], None, b'{"__metadata__":{"format":"a","format":"b"}}'),
        "twin_deep": safetensors_blob([], None, b'{"a":' + b"[" * 64 + b"]" * 64 + b"}"),
        "twin_bad_offsets": safetensors_blob(twin, meta).replace(b'"data_offsets":[0,', b'"data_offsets":[4,', 1),
        "weights_bf16": safetensors_blob([(f"blocks.{i}.attn.to_q.weight", "BF16", (4,), b"\0" * 8) for i in range(64)]),
    }
    for name, blob in seeds.items():
        with open(os.path.join(folder, name + ".safetensors"), "wb") as f:
            f.write(blob)


def write_pickle_seed(blob, path):
    """data.pkl of a generated file, for the pickle fuzz entry point (fuzz_pickle.cpp)."""
    if isinstance(blob, Sparse):
        return
    try:
        records = read_zip_records(blob)
    except Exception:  # the container itself is the defect: no pickle to extract
        return
    pickles = [data for name, data in records if name.endswith(b"data.pkl")]
    if pickles and len(pickles[0]) <= 1 << 20:
        with open(path, "wb") as f:
            f.write(pickles[0])


def self_check():
    """The assembler and zip writer reproduce torch.save byte for byte, so the corpus is realistic."""
    obj = payload()
    buf = io.BytesIO()
    torch.save(obj, buf)
    real = buf.getvalue()
    ours = records_for(tree_of(obj))
    real_records = read_zip_records(real)
    ours[-1].data = real_records[-1][1]  # serialization_id uses c10::hash: take torch's
    mine = build_zip(ours)[0]
    if mine != real:
        names = [(n, n2, d == r.data) for (n, d), r, n2 in zip(real_records, ours, (r.name for r in ours))]
        raise SystemExit(f"make_corpus: torch_zip no longer reproduces torch.save: {names}")


def check_valid(blob, c):
    """Files we claim valid load in torch.load with the stated values: weights_only=True, except for
    pickle protocols 4/5, whose FRAME opcode torch 2.11's weights_only unpickler rejects (we wrote those
    files ourselves with torch.save a moment ago, so a full load is safe)."""
    framed = b"\x80\x04" in blob or b"\x80\x05" in blob
    loaded = torch.load(io.BytesIO(blob), weights_only=not framed, map_location="cpu")
    got = stats(loaded)
    if json.dumps(got, sort_keys=True) != json.dumps(c["expect"], sort_keys=True):
        raise SystemExit(f"make_corpus: {c['file']} does not load as expected in torch")


if __name__ == "__main__":
    main()
