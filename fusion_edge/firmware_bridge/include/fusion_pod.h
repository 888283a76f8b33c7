/*
 * fusion_pod.h - fusion-edge pod wire protocol v1, header-only C99.
 *
 * The normative text is PROTOCOL.md next to this folder; the Python codec
 * (fusion_edge/firmware_bridge/protocol.py, control.py) and this header are pinned to the same
 * bytes by tests/data/firmware_bridge/pod_vectors.json. Little-endian, no padding; every
 * multi-byte field is read and written byte by byte, so the code is endian- and
 * alignment-independent. No allocation, no libc beyond <stdint.h>/<stddef.h>.
 *
 * Pod side:   fpod_encode_packet(), fpod_decode_command(), fpod_encode_response().
 * Host side:  fpod_decode_packet(), fpod_encode_command(), fpod_decode_response().
 */
#ifndef FUSION_POD_H
#define FUSION_POD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- GATT --------------------------------------------------------------------------------- */
#define FPOD_SERVICE_UUID      "6e4f0001-b5a3-f393-e0a9-e50e24dcca9e"
#define FPOD_DATA_CHAR_UUID    "6e4f0002-b5a3-f393-e0a9-e50e24dcca9e" /* notify */
#define FPOD_CONTROL_CHAR_UUID "6e4f0003-b5a3-f393-e0a9-e50e24dcca9e" /* write, indicate */

/* ---- data packet v1 ------------------------------------------------------------------------ */
#define FPOD_PACKET_VERSION 1u
#define FPOD_OFF_VERSION     0
#define FPOD_OFF_SENSORS     1
#define FPOD_OFF_BOOT_ID     2
#define FPOD_OFF_SEQ         4
#define FPOD_OFF_N_SAMPLES   6
#define FPOD_OFF_RATE_CODE   7
#define FPOD_OFF_ACCEL_RANGE 8
#define FPOD_OFF_GYRO_RANGE  9
#define FPOD_OFF_T0_US       10
#define FPOD_OFF_SAMPLES     18
#define FPOD_HEADER_SIZE     18
#define FPOD_CRC_SIZE        2
#define FPOD_PACKET_OVERHEAD (FPOD_HEADER_SIZE + FPOD_CRC_SIZE)
#define FPOD_MAX_SAMPLES     255
#define FPOD_ATT_HEADER_SIZE 3
#define FPOD_MAX_PACKET_SIZE (FPOD_PACKET_OVERHEAD + 2 * 9 * FPOD_MAX_SAMPLES)

#define FPOD_SENSOR_ACCEL 0x01u
#define FPOD_SENSOR_GYRO  0x02u
#define FPOD_SENSOR_MAG   0x04u
#define FPOD_SENSOR_ALL   0x07u

/* rate codes: 0 25 Hz, 1 50 Hz, 2 100 Hz, 3 200 Hz */
#define FPOD_RATE_CODE_COUNT 4u
/* accel range codes: 0 +-2 g, 1 +-4 g, 2 +-8 g, 3 +-16 g (range / 32768 per LSB) */
#define FPOD_ACCEL_RANGE_COUNT 4u
/* gyro range codes: 0 +-250, 1 +-500, 2 +-1000, 3 +-2000 deg/s (range / 32768 per LSB) */
#define FPOD_GYRO_RANGE_COUNT 4u
/* magnetometer: fixed, 0.15 uT per LSB */

/* ---- results (same failure names as the Python errors, PROTOCOL.md section 6) --------------- */
#define FPOD_OK                    0
#define FPOD_ERR_TRUNCATED        (-1)
#define FPOD_ERR_BAD_CRC          (-2)
#define FPOD_ERR_UNKNOWN_VERSION  (-3)
#define FPOD_ERR_MALFORMED        (-4)
#define FPOD_ERR_UNKNOWN_COMMAND  (-5)
#define FPOD_ERR_BAD_ARGUMENT     (-6)
#define FPOD_ERR_BUFFER_TOO_SMALL (-7)

typedef struct fpod_header {
    uint8_t version;
    uint8_t sensors;
    uint16_t boot_id;
    uint16_t seq;
    uint8_t n_samples;
    uint8_t rate_code;
    uint8_t accel_range;
    uint8_t gyro_range;
    uint64_t t0_us;
} fpod_header_t;

/* ---- little-endian helpers ------------------------------------------------------------------ */
static inline void fpod_put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}
static inline uint16_t fpod_get_u16(const uint8_t *p) {
    return (uint16_t)((uint16_t)p[0] | ((uint16_t)p[1] << 8));
}
static inline void fpod_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t fpod_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR ("123456789" ->
 * 0x29B1). Bitwise on purpose: small flash; a 512-byte table is a drop-in if speed matters. */
static inline uint16_t fpod_crc16(const uint8_t *data, size_t len) {
    uint16_t crc = 0xFFFFu;
    for (size_t i = 0; i < len; ++i) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (int b = 0; b < 8; ++b)
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* True when the last two bytes are the CRC (LE) of everything before them. */
static inline int fpod_crc_matches(const uint8_t *frame, size_t len) {
    if (len < FPOD_CRC_SIZE) return 0;
    return fpod_crc16(frame, len - FPOD_CRC_SIZE) == fpod_get_u16(frame + len - FPOD_CRC_SIZE);
}

static inline unsigned fpod_channel_count(uint8_t sensors) {
    return 3u * (unsigned)(((sensors >> 0) & 1u) + ((sensors >> 1) & 1u) + ((sensors >> 2) & 1u));
}

static inline size_t fpod_packet_size(uint8_t sensors, uint8_t n_samples) {
    return (size_t)FPOD_PACKET_OVERHEAD + 2u * fpod_channel_count(sensors) * (size_t)n_samples;
}

/* Samples one notification holds at a negotiated ATT MTU (0: too small, answer START with
 * FPOD_STATUS_MTU_TOO_SMALL). */
static inline unsigned fpod_max_samples_per_packet(unsigned att_mtu, uint8_t sensors) {
    unsigned ch = fpod_channel_count(sensors);
    if (ch == 0 || att_mtu < FPOD_ATT_HEADER_SIZE + FPOD_PACKET_OVERHEAD) return 0;
    unsigned n = (att_mtu - FPOD_ATT_HEADER_SIZE - FPOD_PACKET_OVERHEAD) / (2u * ch);
    return n > FPOD_MAX_SAMPLES ? FPOD_MAX_SAMPLES : n;
}

static inline int fpod_header_valid(const fpod_header_t *h) {
    return h->version == FPOD_PACKET_VERSION && h->sensors != 0 &&
           (h->sensors & ~FPOD_SENSOR_ALL) == 0 && h->n_samples != 0 &&
           h->rate_code < FPOD_RATE_CODE_COUNT && h->accel_range < FPOD_ACCEL_RANGE_COUNT &&
           h->gyro_range < FPOD_GYRO_RANGE_COUNT;
}

/* Encode a packet. samples: n_samples * channels int16, sample-major, channel order accel,
 * gyro, mag (x, y, z each). Returns the packet size, or FPOD_ERR_MALFORMED /
 * FPOD_ERR_BUFFER_TOO_SMALL. */
static inline int fpod_encode_packet(const fpod_header_t *h, const int16_t *samples, uint8_t *out,
                                     size_t out_cap) {
    if (!fpod_header_valid(h)) return FPOD_ERR_MALFORMED;
    size_t size = fpod_packet_size(h->sensors, h->n_samples);
    if (out_cap < size) return FPOD_ERR_BUFFER_TOO_SMALL;
    out[FPOD_OFF_VERSION] = h->version;
    out[FPOD_OFF_SENSORS] = h->sensors;
    fpod_put_u16(out + FPOD_OFF_BOOT_ID, h->boot_id);
    fpod_put_u16(out + FPOD_OFF_SEQ, h->seq);
    out[FPOD_OFF_N_SAMPLES] = h->n_samples;
    out[FPOD_OFF_RATE_CODE] = h->rate_code;
    out[FPOD_OFF_ACCEL_RANGE] = h->accel_range;
    out[FPOD_OFF_GYRO_RANGE] = h->gyro_range;
    fpod_put_u64(out + FPOD_OFF_T0_US, h->t0_us);
    size_t values = (size_t)h->n_samples * fpod_channel_count(h->sensors);
    for (size_t i = 0; i < values; ++i)
        fpod_put_u16(out + FPOD_OFF_SAMPLES + 2 * i, (uint16_t)samples[i]);
    fpod_put_u16(out + size - FPOD_CRC_SIZE, fpod_crc16(out, size - FPOD_CRC_SIZE));
    return (int)size;
}

/* Decode a packet (checks in PROTOCOL.md section 6 order). samples receives
 * n_samples * channels values; samples_cap is its capacity in values (samples may be NULL to
 * read and check the header only). Returns FPOD_OK or a negative FPOD_ERR_*. */
static inline int fpod_decode_packet(const uint8_t *data, size_t len, fpod_header_t *h,
                                     int16_t *samples, size_t samples_cap) {
    if (len < 1) return FPOD_ERR_TRUNCATED;
    if (data[0] != FPOD_PACKET_VERSION) {
        if (len > FPOD_CRC_SIZE && !fpod_crc_matches(data, len)) return FPOD_ERR_BAD_CRC;
        return FPOD_ERR_UNKNOWN_VERSION;
    }
    if (len < FPOD_PACKET_OVERHEAD) return FPOD_ERR_TRUNCATED;
    h->version = data[FPOD_OFF_VERSION];
    h->sensors = data[FPOD_OFF_SENSORS];
    h->boot_id = fpod_get_u16(data + FPOD_OFF_BOOT_ID);
    h->seq = fpod_get_u16(data + FPOD_OFF_SEQ);
    h->n_samples = data[FPOD_OFF_N_SAMPLES];
    h->rate_code = data[FPOD_OFF_RATE_CODE];
    h->accel_range = data[FPOD_OFF_ACCEL_RANGE];
    h->gyro_range = data[FPOD_OFF_GYRO_RANGE];
    h->t0_us = fpod_get_u64(data + FPOD_OFF_T0_US);
    if (h->sensors & ~FPOD_SENSOR_ALL)
        return fpod_crc_matches(data, len) ? FPOD_ERR_MALFORMED : FPOD_ERR_BAD_CRC;
    size_t expected = fpod_packet_size(h->sensors, h->n_samples);
    if (len < expected) return FPOD_ERR_TRUNCATED;
    if (len > expected) return fpod_crc_matches(data, len) ? FPOD_ERR_MALFORMED : FPOD_ERR_BAD_CRC;
    if (!fpod_crc_matches(data, len)) return FPOD_ERR_BAD_CRC;
    if (!fpod_header_valid(h)) return FPOD_ERR_MALFORMED;
    size_t values = (size_t)h->n_samples * fpod_channel_count(h->sensors);
    if (samples == NULL) return FPOD_OK; /* header only */
    if (samples_cap < values) return FPOD_ERR_BUFFER_TOO_SMALL;
    for (size_t i = 0; i < values; ++i)
        samples[i] = (int16_t)fpod_get_u16(data + FPOD_OFF_SAMPLES + 2 * i);
    return FPOD_OK;
}

/* ---- control frames ------------------------------------------------------------------------ */
#define FPOD_CONTROL_VERSION 1u
#define FPOD_RESPONSE_FLAG   0x80u

#define FPOD_OP_START       0x01u
#define FPOD_OP_STOP        0x02u
#define FPOD_OP_SET_RATE    0x03u
#define FPOD_OP_SET_RANGE   0x04u
#define FPOD_OP_SET_TIME    0x05u
#define FPOD_OP_INFO        0x06u
#define FPOD_OP_SET_SENSORS 0x07u

#define FPOD_STATUS_OK                  0u
#define FPOD_STATUS_UNKNOWN_COMMAND     1u
#define FPOD_STATUS_BAD_ARGUMENT        2u
#define FPOD_STATUS_BUSY                3u
#define FPOD_STATUS_UNSUPPORTED_VERSION 4u
#define FPOD_STATUS_BAD_CRC             5u
#define FPOD_STATUS_BAD_LENGTH          6u
#define FPOD_STATUS_MTU_TOO_SMALL       7u
#define FPOD_STATUS_NOT_STREAMING       8u
#define FPOD_STATUS_INTERNAL_ERROR      0xFFu

#define FPOD_COMMAND_HEADER_SIZE  3
#define FPOD_RESPONSE_HEADER_SIZE 4
#define FPOD_INFO_PAYLOAD_SIZE    14
#define FPOD_MAX_CONTROL_FRAME    (FPOD_RESPONSE_HEADER_SIZE + FPOD_INFO_PAYLOAD_SIZE + FPOD_CRC_SIZE)

/* Only the fields of the given opcode are used. */
typedef struct fpod_command {
    uint8_t opcode;
    uint8_t token;
    uint8_t rate_code;   /* SET_RATE */
    uint8_t accel_range; /* SET_RANGE */
    uint8_t gyro_range;  /* SET_RANGE */
    uint8_t sensors;     /* SET_SENSORS */
    uint64_t time_us;    /* SET_TIME */
} fpod_command_t;

typedef struct fpod_info {
    uint8_t fw_major, fw_minor, fw_patch, packet_version;
    uint16_t boot_id;
    uint8_t sensors, rate_code, accel_range, gyro_range;
    uint16_t battery_mv;
    uint8_t battery_pct; /* 255 = unknown */
    uint8_t streaming;
} fpod_info_t;

typedef struct fpod_response {
    uint8_t opcode; /* the command's opcode, without the response flag */
    uint8_t token;
    uint8_t status;
    fpod_info_t info; /* valid when opcode == INFO and status == OK */
} fpod_response_t;

/* Argument bytes of an opcode, or -1 for an unknown opcode. */
static inline int fpod_command_args_size(uint8_t opcode) {
    switch (opcode) {
    case FPOD_OP_START: case FPOD_OP_STOP: case FPOD_OP_INFO: return 0;
    case FPOD_OP_SET_RATE: case FPOD_OP_SET_SENSORS: return 1;
    case FPOD_OP_SET_RANGE: return 2;
    case FPOD_OP_SET_TIME: return 8;
    default: return -1;
    }
}

static inline int fpod_command_args_valid(const fpod_command_t *c) {
    switch (c->opcode) {
    case FPOD_OP_SET_RATE: return c->rate_code < FPOD_RATE_CODE_COUNT;
    case FPOD_OP_SET_RANGE:
        return c->accel_range < FPOD_ACCEL_RANGE_COUNT && c->gyro_range < FPOD_GYRO_RANGE_COUNT;
    case FPOD_OP_SET_SENSORS: return c->sensors != 0 && (c->sensors & ~FPOD_SENSOR_ALL) == 0;
    default: return 1;
    }
}

/* Returns the frame size or a negative FPOD_ERR_*. */
static inline int fpod_encode_command(const fpod_command_t *c, uint8_t *out, size_t out_cap) {
    int args = fpod_command_args_size(c->opcode);
    if (args < 0) return FPOD_ERR_UNKNOWN_COMMAND;
    if (!fpod_command_args_valid(c)) return FPOD_ERR_BAD_ARGUMENT;
    size_t size = (size_t)(FPOD_COMMAND_HEADER_SIZE + args + FPOD_CRC_SIZE);
    if (out_cap < size) return FPOD_ERR_BUFFER_TOO_SMALL;
    out[0] = FPOD_CONTROL_VERSION;
    out[1] = c->opcode;
    out[2] = c->token;
    uint8_t *a = out + FPOD_COMMAND_HEADER_SIZE;
    switch (c->opcode) {
    case FPOD_OP_SET_RATE: a[0] = c->rate_code; break;
    case FPOD_OP_SET_RANGE: a[0] = c->accel_range; a[1] = c->gyro_range; break;
    case FPOD_OP_SET_TIME: fpod_put_u64(a, c->time_us); break;
    case FPOD_OP_SET_SENSORS: a[0] = c->sensors; break;
    default: break;
    }
    fpod_put_u16(out + size - FPOD_CRC_SIZE, fpod_crc16(out, size - FPOD_CRC_SIZE));
    return (int)size;
}

/* Pod side. On any error, answer with fpod_status_for_error(); c->opcode and c->token are
 * filled whenever the frame was long enough to hold them. */
static inline int fpod_decode_command(const uint8_t *data, size_t len, fpod_command_t *c) {
    c->opcode = 0;
    c->token = 0;
    if (len < 1) return FPOD_ERR_TRUNCATED;
    if (len >= FPOD_COMMAND_HEADER_SIZE) {
        c->opcode = data[1];
        c->token = data[2];
    }
    if (data[0] != FPOD_CONTROL_VERSION) {
        if (len > FPOD_CRC_SIZE && !fpod_crc_matches(data, len)) return FPOD_ERR_BAD_CRC;
        return FPOD_ERR_UNKNOWN_VERSION;
    }
    if (len < FPOD_COMMAND_HEADER_SIZE + FPOD_CRC_SIZE) return FPOD_ERR_TRUNCATED;
    int args = fpod_command_args_size(c->opcode);
    if (args < 0) return fpod_crc_matches(data, len) ? FPOD_ERR_UNKNOWN_COMMAND : FPOD_ERR_BAD_CRC;
    size_t expected = (size_t)(FPOD_COMMAND_HEADER_SIZE + args + FPOD_CRC_SIZE);
    if (len < expected) return FPOD_ERR_TRUNCATED;
    if (!fpod_crc_matches(data, len)) return FPOD_ERR_BAD_CRC;
    if (len > expected) return FPOD_ERR_MALFORMED;
    const uint8_t *a = data + FPOD_COMMAND_HEADER_SIZE;
    switch (c->opcode) {
    case FPOD_OP_SET_RATE: c->rate_code = a[0]; break;
    case FPOD_OP_SET_RANGE: c->accel_range = a[0]; c->gyro_range = a[1]; break;
    case FPOD_OP_SET_TIME: c->time_us = fpod_get_u64(a); break;
    case FPOD_OP_SET_SENSORS: c->sensors = a[0]; break;
    default: break;
    }
    return fpod_command_args_valid(c) ? FPOD_OK : FPOD_ERR_BAD_ARGUMENT;
}

static inline uint8_t fpod_status_for_error(int err) {
    switch (err) {
    case FPOD_OK: return FPOD_STATUS_OK;
    case FPOD_ERR_UNKNOWN_COMMAND: return FPOD_STATUS_UNKNOWN_COMMAND;
    case FPOD_ERR_BAD_ARGUMENT: return FPOD_STATUS_BAD_ARGUMENT;
    case FPOD_ERR_UNKNOWN_VERSION: return FPOD_STATUS_UNSUPPORTED_VERSION;
    case FPOD_ERR_BAD_CRC: return FPOD_STATUS_BAD_CRC;
    case FPOD_ERR_TRUNCATED: case FPOD_ERR_MALFORMED: return FPOD_STATUS_BAD_LENGTH;
    default: return FPOD_STATUS_INTERNAL_ERROR;
    }
}

static inline int fpod_response_has_info(const fpod_response_t *r) {
    return r->opcode == FPOD_OP_INFO && r->status == FPOD_STATUS_OK;
}

/* Returns the frame size or a negative FPOD_ERR_*. */
static inline int fpod_encode_response(const fpod_response_t *r, uint8_t *out, size_t out_cap) {
    size_t payload = fpod_response_has_info(r) ? FPOD_INFO_PAYLOAD_SIZE : 0;
    size_t size = FPOD_RESPONSE_HEADER_SIZE + payload + FPOD_CRC_SIZE;
    if (out_cap < size) return FPOD_ERR_BUFFER_TOO_SMALL;
    out[0] = FPOD_CONTROL_VERSION;
    out[1] = (uint8_t)(r->opcode | FPOD_RESPONSE_FLAG);
    out[2] = r->token;
    out[3] = r->status;
    if (payload) {
        uint8_t *p = out + FPOD_RESPONSE_HEADER_SIZE;
        const fpod_info_t *i = &r->info;
        p[0] = i->fw_major; p[1] = i->fw_minor; p[2] = i->fw_patch; p[3] = i->packet_version;
        fpod_put_u16(p + 4, i->boot_id);
        p[6] = i->sensors; p[7] = i->rate_code; p[8] = i->accel_range; p[9] = i->gyro_range;
        fpod_put_u16(p + 10, i->battery_mv);
        p[12] = i->battery_pct; p[13] = i->streaming;
    }
    fpod_put_u16(out + size - FPOD_CRC_SIZE, fpod_crc16(out, size - FPOD_CRC_SIZE));
    return (int)size;
}

static inline int fpod_status_known(uint8_t s) {
    return s <= FPOD_STATUS_NOT_STREAMING || s == FPOD_STATUS_INTERNAL_ERROR;
}

/* Host side. Returns FPOD_OK or a negative FPOD_ERR_*. */
static inline int fpod_decode_response(const uint8_t *data, size_t len, fpod_response_t *r) {
    if (len < 1) return FPOD_ERR_TRUNCATED;
    if (data[0] != FPOD_CONTROL_VERSION) {
        if (len > FPOD_CRC_SIZE && !fpod_crc_matches(data, len)) return FPOD_ERR_BAD_CRC;
        return FPOD_ERR_UNKNOWN_VERSION;
    }
    if (len < FPOD_RESPONSE_HEADER_SIZE + FPOD_CRC_SIZE) return FPOD_ERR_TRUNCATED;
    r->opcode = (uint8_t)(data[1] & ~FPOD_RESPONSE_FLAG);
    r->token = data[2];
    r->status = data[3];
    size_t payload = fpod_response_has_info(r) ? FPOD_INFO_PAYLOAD_SIZE : 0;
    size_t expected = FPOD_RESPONSE_HEADER_SIZE + payload + FPOD_CRC_SIZE;
    if (len < expected) return FPOD_ERR_TRUNCATED;
    if (!fpod_crc_matches(data, len)) return FPOD_ERR_BAD_CRC;
    if (len > expected) return FPOD_ERR_MALFORMED;
    if (!(data[1] & FPOD_RESPONSE_FLAG) || !fpod_status_known(r->status)) return FPOD_ERR_MALFORMED;
    if (payload) {
        const uint8_t *p = data + FPOD_RESPONSE_HEADER_SIZE;
        fpod_info_t *i = &r->info;
        i->fw_major = p[0]; i->fw_minor = p[1]; i->fw_patch = p[2]; i->packet_version = p[3];
        i->boot_id = fpod_get_u16(p + 4);
        i->sensors = p[6]; i->rate_code = p[7]; i->accel_range = p[8]; i->gyro_range = p[9];
        i->battery_mv = fpod_get_u16(p + 10);
        i->battery_pct = p[12]; i->streaming = p[13];
    }
    return FPOD_OK;
}

#ifdef __cplusplus
}
#endif
#endif /* FUSION_POD_H */
