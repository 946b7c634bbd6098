"""The gateway's MQTT packet codec (pure): encodings byte for byte against MQTT 3.1.1, and
the incremental reader on streams cut at every possible point."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eldercare.protocol import wire


def test_connect_encodes_credentials_session_and_keepalive():
    pkt = wire.connect("gw-0", "user", "pw", clean_session=False, keepalive=30)
    # fixed header, "MQTT", level 4, flags user+password (no clean session), keepalive 30
    assert pkt[:1] == b"\x10"
    assert pkt[2:12] == b"\x00\x04MQTT\x04\xc0\x00\x1e"
    assert pkt[12:] == b"\x00\x04gw-0\x00\x04user\x00\x02pw"
    assert pkt[1] == len(pkt) - 2
    clean = wire.connect("c", "u", "p", clean_session=True, keepalive=5)
    assert clean[9] == 0xC2


def test_subscribe_pubacks_publish_bytes():
    assert wire.subscribe(1, [("a/+", 1)]) == b"\x82\x08\x00\x01\x00\x03a/+\x01"
    assert wire.pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"
    assert wire.pubacks([]) == b""
    assert wire.publish("t", b"xy", 1, 7) == b"\x32\x07\x00\x01t\x00\x07xy"
    assert wire.publish("t", b"xy") == b"\x30\x05\x00\x01txy"


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
     (16384, b"\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f")],
)  # fmt: skip
def test_remaining_length_examples_from_the_spec(n, encoded):
    assert wire.remaining_length(n) == encoded


def test_reader_parses_publish_fields_and_other_packets_in_order():
    stream = (
        b"\x20\x02\x01\x00"  # CONNACK, session present
        + wire.publish("eldercare/v1/dev/d1/up", b'{"a":1}', 1, 42)
        + b"\x3b" + bytes([2 + 1 + 2 + 1]) + b"\x00\x01x\x00\x09!"  # QoS 1, DUP, RETAIN
        + b"\xd0\x00"  # PINGRESP
        + wire.publish("s", b"online", 0)
    )  # fmt: skip
    out = wire.Reader().feed(stream)
    assert out[0] == wire.Packet(wire.CONNACK, 0, b"\x01\x00")
    assert wire.connack_code(out[0]) == (True, 0)
    assert out[1] == wire.Publish("eldercare/v1/dev/d1/up", b'{"a":1}', 1, 42, False, False)
    assert out[2] == wire.Publish("x", b"!", 1, 9, True, True)
    assert out[3] == wire.Packet(wire.PINGRESP, 0, b"")
    assert out[4] == wire.Publish("s", b"online", 0, 0, False, False)


def _stream(payloads: list[bytes]) -> bytes:
    return b"".join(
        wire.publish(f"eldercare/v1/dev/d{i}/up", pl, 1, i % 65535 + 1)
        for i, pl in enumerate(payloads)
    )


@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=7000), max_size=12),
)
def test_reader_gives_the_same_packets_however_the_stream_is_split(payloads, cuts):
    stream = _stream(payloads)
    points = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    reader = wire.Reader()
    got: list = []
    for a, b in itertools.pairwise(points):
        got += reader.feed(stream[a:b])
    assert reader.pending == 0
    assert [g.payload for g in got] == payloads
    assert [g.pid for g in got] == [i % 65535 + 1 for i in range(len(payloads))]


def test_reader_byte_by_byte_with_multibyte_length():
    big = b"x" * 20_000  # a three-byte remaining length
    stream = _stream([big, b"small"])
    reader = wire.Reader()
    got: list = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
    assert [g.payload for g in got] == [big, b"small"]


@pytest.mark.parametrize(
    "stream",
    [
        b"\x30\xff\xff\xff\xff\x01",  # remaining length longer than four bytes
        b"\x36\x04\x00\x01t\x00",  # QoS 3
        b"\x32\x03\x00\x05t",  # topic longer than the packet
        b"\x30\x03\x00\x01\xff",  # topic not UTF-8
        b"\x30\x01\x00",  # PUBLISH without a topic length
        b"\x30\xff\xff\x7f",  # over MAX_PACKET
    ],
)
def test_reader_refuses_streams_that_are_not_mqtt(stream):
    with pytest.raises(wire.MalformedPacket):
        wire.Reader().feed(stream)


def test_connack_refusal_code_and_wrong_packet():
    assert wire.connack_code(wire.Packet(wire.CONNACK, 0, b"\x00\x05")) == (False, 5)
    with pytest.raises(wire.MalformedPacket):
        wire.connack_code(wire.Packet(wire.SUBACK, 0, b"\x00\x01\x01"))
