"""fusion_edge.firmware_bridge: the pods' wire protocol, its reader, and the sensor transports.

Only the light, numpy-only names are re-exported here; transports that need bleak, bumble or
pyserial live in their own modules and import those packages when used.
"""

from __future__ import annotations

from fusion_edge.firmware_bridge.control import (
    CommandResponse,
    InfoResponse,
    Opcode,
    StatusCode,
    decode_command,
    decode_response,
    encode_command,
    encode_response,
)
from fusion_edge.firmware_bridge.protocol import (
    CONTROL_CHAR_UUID,
    DATA_CHAR_UUID,
    PACKET_VERSION,
    POD_SERVICE_UUID,
    BadCrcError,
    MalformedPacketError,
    PodPacket,
    SensorMask,
    TruncatedPacketError,
    UnknownVersionError,
    decode_packet,
    encode_packet,
    max_samples_per_packet,
    quantize_si,
)
from fusion_edge.firmware_bridge.reader import (
    BadPacketPolicy,
    PacketReader,
    PodCounters,
    SampleBlock,
)

__all__ = [
    "BadPacketPolicy",
    "PacketReader",
    "PodCounters",
    "SampleBlock",
    "BadCrcError",
    "CONTROL_CHAR_UUID",
    "CommandResponse",
    "DATA_CHAR_UUID",
    "InfoResponse",
    "MalformedPacketError",
    "Opcode",
    "PACKET_VERSION",
    "POD_SERVICE_UUID",
    "PodPacket",
    "SensorMask",
    "StatusCode",
    "TruncatedPacketError",
    "UnknownVersionError",
    "decode_command",
    "decode_packet",
    "decode_response",
    "encode_command",
    "encode_packet",
    "encode_response",
    "max_samples_per_packet",
    "quantize_si",
]
