"""bench/mmaptrace.py's replay: which blocks of a trace are still mapped at its end."""

from __future__ import annotations

import io

from bench.mmaptrace import replay

TRACE = """\
1.000 attached
1.100 mmap 266240 0x7f0000100000 sysmalloc_mmap < _PyBytes_FromSize
1.200 mremap 0x7f0000100000 266240 4096 0x7f0000100000 mremap_chunk < _PyBytes_Resize
1.300 munmap 0x7f0000100000 4096
1.400 mmap 962560 0x7f0000200000 new_keys_object < dictresize < PyUnicode_InternInPlace
1.500 mremap 0x7f0000300000 200704 303104 0x7f0000400000 mremap_chunk < bytearray_iconcat
1.600 munmap 0x7f0000500000 266240
"""


def test_replay_keeps_what_is_still_mapped_with_its_last_change() -> None:
    live = replay(io.StringIO(TRACE))
    assert sorted(live) == [0x7F0000200000, 0x7F0000400000]
    table = live[0x7F0000200000]
    assert (table.size, table.how) == (962560, "mmap") and "dictresize" in table.stack
    grown = live[0x7F0000400000]  # mapped before the trace began, grown and moved during it
    assert (grown.size, grown.how, grown.t) == (303104, "mremap (unseen)", 1.5)
