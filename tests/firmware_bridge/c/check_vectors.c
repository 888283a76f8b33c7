/*
 * Check fusion_pod.h against the golden vectors.
 *
 * test_c_header.py turns tests/data/firmware_bridge/pod_vectors.json into golden_vectors.h
 * (plain C arrays, so this program needs no JSON parser) and builds:
 *     cc -std=c99 -Wall -Wextra -pedantic -Werror -I<include> -I<tmp> check_vectors.c
 * For every vector: decode the hex; a good one must give the listed fields and samples and
 * re-encode to identical bytes, a bad one must fail with the listed error.
 * Prints one line per failure and "checked N vectors, F failures"; exits 1 on any failure.
 */
#include <stdio.h>
#include <string.h>

#include "fusion_pod.h"

typedef struct {
    const char *name;
    int expect;
    const char *hex;
    fpod_header_t h;
    const int16_t *samples;
    size_t n_values;
} packet_vec_t;

typedef struct {
    const char *name;
    int expect;
    const char *hex;
    fpod_command_t c;
} command_vec_t;

typedef struct {
    const char *name;
    int expect;
    const char *hex;
    fpod_response_t r;
} response_vec_t;

#include "golden_vectors.h"

static int failures = 0;
static int checked = 0;

static void fail(const char *kind, const char *name, const char *why) {
    printf("FAIL %s %s: %s\n", kind, name, why);
    ++failures;
}

static size_t from_hex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = strlen(hex) / 2;
    if (n > cap) return (size_t)-1;
    for (size_t i = 0; i < n; ++i) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return (size_t)-1;
        out[i] = (uint8_t)v;
    }
    return n;
}

static int same_header(const fpod_header_t *a, const fpod_header_t *b) {
    return a->version == b->version && a->sensors == b->sensors && a->boot_id == b->boot_id &&
           a->seq == b->seq && a->n_samples == b->n_samples && a->rate_code == b->rate_code &&
           a->accel_range == b->accel_range && a->gyro_range == b->gyro_range &&
           a->t0_us == b->t0_us;
}

static void check_packets(void) {
    static uint8_t raw[FPOD_MAX_PACKET_SIZE + 16], again[FPOD_MAX_PACKET_SIZE + 16];
    static int16_t samples[9 * FPOD_MAX_SAMPLES];
    for (size_t k = 0; k < sizeof(PACKETS) / sizeof(PACKETS[0]); ++k) {
        const packet_vec_t *v = &PACKETS[k];
        ++checked;
        size_t len = from_hex(v->hex, raw, sizeof raw);
        if (len == (size_t)-1) { fail("packet", v->name, "bad hex"); continue; }
        fpod_header_t h;
        memset(&h, 0, sizeof h);
        int rc = fpod_decode_packet(raw, len, &h, samples, sizeof samples / sizeof samples[0]);
        if (rc != v->expect) {
            printf("FAIL packet %s: decode returned %d, expected %d\n", v->name, rc, v->expect);
            ++failures;
            continue;
        }
        if (v->expect != FPOD_OK) continue;
        if (!same_header(&h, &v->h)) { fail("packet", v->name, "header fields differ"); continue; }
        if (v->n_values != (size_t)h.n_samples * fpod_channel_count(h.sensors) ||
            memcmp(samples, v->samples, v->n_values * sizeof(int16_t)) != 0) {
            fail("packet", v->name, "samples differ");
            continue;
        }
        int n = fpod_encode_packet(&v->h, v->samples, again, sizeof again);
        if (n != (int)len || memcmp(again, raw, len) != 0)
            fail("packet", v->name, "re-encoding gives different bytes");
        if (fpod_packet_size(h.sensors, h.n_samples) != len)
            fail("packet", v->name, "fpod_packet_size disagrees");
    }
}

static void check_commands(void) {
    uint8_t raw[64], again[64];
    for (size_t k = 0; k < sizeof(COMMANDS) / sizeof(COMMANDS[0]); ++k) {
        const command_vec_t *v = &COMMANDS[k];
        ++checked;
        size_t len = from_hex(v->hex, raw, sizeof raw);
        if (len == (size_t)-1) { fail("command", v->name, "bad hex"); continue; }
        fpod_command_t c;
        memset(&c, 0, sizeof c);
        int rc = fpod_decode_command(raw, len, &c);
        if (rc != v->expect) {
            printf("FAIL command %s: decode returned %d, expected %d\n", v->name, rc, v->expect);
            ++failures;
            continue;
        }
        if (v->expect != FPOD_OK) continue;
        if (c.opcode != v->c.opcode || c.token != v->c.token || c.rate_code != v->c.rate_code ||
            c.accel_range != v->c.accel_range || c.gyro_range != v->c.gyro_range ||
            c.sensors != v->c.sensors || c.time_us != v->c.time_us) {
            fail("command", v->name, "fields differ");
            continue;
        }
        int n = fpod_encode_command(&v->c, again, sizeof again);
        if (n != (int)len || memcmp(again, raw, len) != 0)
            fail("command", v->name, "re-encoding gives different bytes");
    }
}

static void check_responses(void) {
    uint8_t raw[64], again[64];
    for (size_t k = 0; k < sizeof(RESPONSES) / sizeof(RESPONSES[0]); ++k) {
        const response_vec_t *v = &RESPONSES[k];
        ++checked;
        size_t len = from_hex(v->hex, raw, sizeof raw);
        if (len == (size_t)-1) { fail("response", v->name, "bad hex"); continue; }
        fpod_response_t r;
        memset(&r, 0, sizeof r);
        int rc = fpod_decode_response(raw, len, &r);
        if (rc != v->expect) {
            printf("FAIL response %s: decode returned %d, expected %d\n", v->name, rc, v->expect);
            ++failures;
            continue;
        }
        if (v->expect != FPOD_OK) continue;
        if (r.opcode != v->r.opcode || r.token != v->r.token || r.status != v->r.status ||
            memcmp(&r.info, &v->r.info, sizeof r.info) != 0) {
            fail("response", v->name, "fields differ");
            continue;
        }
        int n = fpod_encode_response(&v->r, again, sizeof again);
        if (n != (int)len || memcmp(again, raw, len) != 0)
            fail("response", v->name, "re-encoding gives different bytes");
    }
}

int main(void) {
    ++checked;
    if (fpod_crc16((const uint8_t *)"123456789", 9) != 0x29B1u) fail("crc", "check", "not 0x29B1");
    check_packets();
    check_commands();
    check_responses();
    printf("checked %d vectors, %d failures\n", checked, failures);
    return failures ? 1 : 0;
}
