// The raw librabbitmq baseline cta-bench compares the Swift client against: the same work, no abstraction.
#include "cta_amqp_baseline.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int ok_reply(amqp_rpc_reply_t reply, const char *what) {
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) return 1;
    fprintf(stderr, "baseline: %s failed (reply type %d)\n", what, reply.reply_type);
    return 0;
}

static amqp_connection_state_t open_connection(const char *host, int port) {
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (!socket || amqp_socket_open(socket, host, port) != AMQP_STATUS_OK) {
        fprintf(stderr, "baseline: cannot connect to %s:%d\n", host, port);
        amqp_destroy_connection(conn);
        return NULL;
    }
    if (!ok_reply(amqp_login(conn, "/", 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login")) {
        amqp_destroy_connection(conn);
        return NULL;
    }
    amqp_channel_open(conn, 1);
    if (!ok_reply(amqp_get_rpc_reply(conn), "channel.open")) {
        amqp_destroy_connection(conn);
        return NULL;
    }
    return conn;
}

static void close_connection(amqp_connection_state_t conn) {
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}

double cta_amqp_baseline_publish(const char *host, int port, const char *queue, int count, int body_size, int window) {
    amqp_connection_state_t conn = open_connection(host, port);
    if (!conn) return -1;
    amqp_confirm_select(conn, 1);
    if (!ok_reply(amqp_get_rpc_reply(conn), "confirm.select")) {
        close_connection(conn);
        return -1;
    }
    char *body = malloc((size_t)body_size);
    memset(body, 'a', (size_t)body_size);
    amqp_bytes_t body_bytes = {(size_t)body_size, body};
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.delivery_mode = 2;
    props.content_type = amqp_cstring_bytes("application/octet-stream");

    double start = now_seconds();
    uint64_t published = 0, confirmed = 0;
    int nacked = 0;
    while (confirmed < (uint64_t)count) {
        while (published < (uint64_t)count && published - confirmed < (uint64_t)window) {
            if (amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(queue), 0, 0, &props, body_bytes) !=
                AMQP_STATUS_OK) {
                fprintf(stderr, "baseline: publish failed\n");
                free(body);
                close_connection(conn);
                return -1;
            }
            published++;
        }
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK) {
            fprintf(stderr, "baseline: lost the connection waiting for confirms\n");
            free(body);
            amqp_destroy_connection(conn);
            return -1;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD) continue;
        if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD || frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            uint64_t tag;
            int multiple;
            if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
                amqp_basic_ack_t *ack = frame.payload.method.decoded;
                tag = ack->delivery_tag;
                multiple = ack->multiple;
            } else {
                amqp_basic_nack_t *nack = frame.payload.method.decoded;
                tag = nack->delivery_tag;
                multiple = nack->multiple;
                nacked++;
            }
            // Confirms from one queue arrive in order: a single ack settles exactly the next tag.
            confirmed = multiple ? tag : confirmed + 1;
        }
        amqp_maybe_release_buffers(conn);
    }
    double elapsed = now_seconds() - start;
    free(body);
    close_connection(conn);
    if (nacked) fprintf(stderr, "baseline: %d messages nacked\n", nacked);
    return elapsed;
}

double cta_amqp_baseline_consume(const char *host, int port, const char *queue, int count, int prefetch, int ack_every) {
    amqp_connection_state_t conn = open_connection(host, port);
    if (!conn) return -1;
    amqp_basic_qos(conn, 1, 0, (uint16_t)prefetch, 0);
    if (!ok_reply(amqp_get_rpc_reply(conn), "basic.qos")) {
        close_connection(conn);
        return -1;
    }
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    if (!ok_reply(amqp_get_rpc_reply(conn), "basic.consume")) {
        close_connection(conn);
        return -1;
    }
    double start = now_seconds();
    int received = 0;
    size_t bytes = 0;
    while (received < count) {
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t reply = amqp_consume_message(conn, &envelope, NULL, 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
            fprintf(stderr, "baseline: consume failed after %d messages\n", received);
            amqp_destroy_connection(conn);
            return -1;
        }
        bytes += envelope.message.body.len;  // touch the body as a real consumer would
        received++;
        if (received % ack_every == 0 || received == count) {
            amqp_basic_ack(conn, 1, envelope.delivery_tag, 1);
        }
        amqp_destroy_envelope(&envelope);
    }
    double elapsed = now_seconds() - start;
    close_connection(conn);
    return bytes > 0 ? elapsed : -1;
}
