"""Fuzz harnesses (atheris / libFuzzer) for the parts of vipgate that read hostile input.

==========  =====================================================================================
target      what is fed, and what counts as a crash
==========  =====================================================================================
``bgp``     ``vipgate.bgp.wire``: a byte stream to the :class:`~vipgate.bgp.wire.Decoder`, whole
            and split at fuzz-chosen points, or one message body framed with a valid header (every
            message type). Crash: an exception other than :class:`BgpError`, a BgpError whose
            (code, subcode) is not one RFC 4271/7313 gives for a received message, a split
            stream decoding differently from the whole one, a decoded message that does not
            survive encode -> decode unchanged.
``probe``   ``vipgate.health.probe``: the bytes a hostile server answers, fed (chunked, then EOF /
            reset / silence) to the probe's pure :class:`~vipgate.health.probe.ResponseClassifier`,
            three checks on one connection. Crash: an exception, a verdict that contradicts
            itself, a connection kept for reuse that refuses the next request.
``config``  ``vipgate.config.load``: a random environment and flags over every setting.
            Crash: an exception other than :class:`ConfigError`; a secret's value in the error;
            a loaded config that the daemon's own constructors (probe, gate, speaker) reject.
``rtnl``    ``vipgate.routing.rtnl``: a reply stream of netlink messages for a query (table,
            protocol, interface, sequence number) to the routing-table mode's decoders.
            Crash: an exception other than DumpEnd or the error message's OSError; a route of
            another table, protocol or family; a route that does not survive encode -> decode;
            an address of another interface.
==========  =====================================================================================

Each target is ``fuzz/<target>.py`` with ``check(data: bytes) -> None`` (raises on a crash) and a
libFuzzer entry point::

    .venv/bin/python -m fuzz.bgp -max_total_time=600 /tmp/corpus-bgp fuzz/corpus/bgp
    .venv/bin/python -m fuzz.run --seconds 600 --out bench/out/fuzz   # every target, figures

``fuzz/corpus/<target>/`` holds the starting corpus (made by ``python -m fuzz.seeds``) and
``fuzz/regressions/<target>/`` every input that once crashed (tests/unit/test_fuzz.py replays
both on every run, then fuzzes each target for a few seconds).
"""
