#ifndef CTA_CRABBITMQ_SHIM_H
#define CTA_CRABBITMQ_SHIM_H

// librabbitmq 0.12+ moved its headers under rabbitmq-c/; 0.11 (Debian 12) has them at the top level.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/framing.h>
#include <rabbitmq-c/tcp_socket.h>
#include <rabbitmq-c/ssl_socket.h>
#else
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#endif

#include <stdint.h>
#include <sys/time.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <string.h>

/// A non-blocking eventfd that wakes a connection's thread when work is queued for it.
static inline int cta_wakeup_fd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

/// amqp_login is variadic, which Swift cannot call: this wrapper passes PLAIN credentials.
static inline amqp_rpc_reply_t cta_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                                    int channel_max, int frame_max, int heartbeat,
                                                    const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}

// Method numbers and property flags are cast macros, which Swift does not import: re-export them as constants.
static const amqp_method_number_t cta_method_basic_deliver = AMQP_BASIC_DELIVER_METHOD;
static const amqp_method_number_t cta_method_basic_ack = AMQP_BASIC_ACK_METHOD;
static const amqp_method_number_t cta_method_basic_nack = AMQP_BASIC_NACK_METHOD;
static const amqp_method_number_t cta_method_basic_return = AMQP_BASIC_RETURN_METHOD;
static const amqp_method_number_t cta_method_basic_cancel = AMQP_BASIC_CANCEL_METHOD;
static const amqp_method_number_t cta_method_channel_close = AMQP_CHANNEL_CLOSE_METHOD;
static const amqp_method_number_t cta_method_connection_close = AMQP_CONNECTION_CLOSE_METHOD;
static const amqp_method_number_t cta_method_connection_blocked = AMQP_CONNECTION_BLOCKED_METHOD;
static const amqp_method_number_t cta_method_connection_unblocked = AMQP_CONNECTION_UNBLOCKED_METHOD;

static const amqp_flags_t cta_flag_content_type = AMQP_BASIC_CONTENT_TYPE_FLAG;
static const amqp_flags_t cta_flag_content_encoding = AMQP_BASIC_CONTENT_ENCODING_FLAG;
static const amqp_flags_t cta_flag_headers = AMQP_BASIC_HEADERS_FLAG;
static const amqp_flags_t cta_flag_delivery_mode = AMQP_BASIC_DELIVERY_MODE_FLAG;
static const amqp_flags_t cta_flag_priority = AMQP_BASIC_PRIORITY_FLAG;
static const amqp_flags_t cta_flag_correlation_id = AMQP_BASIC_CORRELATION_ID_FLAG;
static const amqp_flags_t cta_flag_reply_to = AMQP_BASIC_REPLY_TO_FLAG;
static const amqp_flags_t cta_flag_expiration = AMQP_BASIC_EXPIRATION_FLAG;
static const amqp_flags_t cta_flag_message_id = AMQP_BASIC_MESSAGE_ID_FLAG;
static const amqp_flags_t cta_flag_timestamp = AMQP_BASIC_TIMESTAMP_FLAG;
static const amqp_flags_t cta_flag_type = AMQP_BASIC_TYPE_FLAG;
static const amqp_flags_t cta_flag_app_id = AMQP_BASIC_APP_ID_FLAG;

/// amqp_login_with_properties is variadic too: PLAIN credentials plus client properties (connection name,
/// capabilities) that the broker shows operators.
static inline amqp_rpc_reply_t cta_amqp_login_plain_properties(amqp_connection_state_t state, const char *vhost,
                                                               int channel_max, int frame_max, int heartbeat,
                                                               const amqp_table_t *properties,
                                                               const char *user, const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

static inline struct timeval cta_timeval_ms(long milliseconds) {
    struct timeval tv;
    tv.tv_sec = milliseconds / 1000;
    tv.tv_usec = (milliseconds % 1000) * 1000;
    return tv;
}

/// Reads one frame if one is buffered or readable now; AMQP_STATUS_TIMEOUT otherwise.
static inline int cta_amqp_wait_frame_now(amqp_connection_state_t state, amqp_frame_t *frame) {
    struct timeval zero = {0, 0};
    return amqp_simple_wait_frame_noblock(state, frame, &zero);
}

static inline void cta_amqp_set_timeouts(amqp_connection_state_t state, long handshake_ms, long rpc_ms) {
    struct timeval handshake = cta_timeval_ms(handshake_ms);
    struct timeval rpc = cta_timeval_ms(rpc_ms);
    amqp_set_handshake_timeout(state, &handshake);
    amqp_set_rpc_timeout(state, &rpc);
}

static inline int cta_amqp_socket_open(amqp_socket_t *socket, const char *host, int port, long timeout_ms) {
    struct timeval timeout = cta_timeval_ms(timeout_ms);
    return amqp_socket_open_noblock(socket, host, port, &timeout);
}

/// 1 when the TCP socket is connected to itself (same local and peer address and port). Connecting in a loop to
/// a local port in the ephemeral range while nothing listens there can end that way (TCP simultaneous open);
/// such a "connection" must be dropped, or it keeps the port the server needs.
static inline int cta_socket_is_self_connected(int fd) {
    struct sockaddr_storage local, peer;
    socklen_t local_len = sizeof local, peer_len = sizeof peer;
    memset(&local, 0, sizeof local);
    memset(&peer, 0, sizeof peer);
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0) return 0;
    if (getpeername(fd, (struct sockaddr *)&peer, &peer_len) != 0) return 0;
    if (local.ss_family != peer.ss_family) return 0;
    if (local.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&local, *b = (struct sockaddr_in *)&peer;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    if (local.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&local, *b = (struct sockaddr_in6 *)&peer;
        return a->sin6_port == b->sin6_port && memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
    }
    return 0;
}

static inline int cta_amqp_send_heartbeat(amqp_connection_state_t state) {
    amqp_frame_t frame;
    frame.frame_type = AMQP_FRAME_HEARTBEAT;
    frame.channel = 0;
    return amqp_send_frame(state, &frame);
}

static inline int cta_amqp_send_channel_close_ok(amqp_connection_state_t state, amqp_channel_t channel) {
    amqp_channel_close_ok_t ok;
    ok.dummy = '\0';
    return amqp_send_method(state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
}

static inline int cta_amqp_send_connection_close_ok(amqp_connection_state_t state) {
    amqp_connection_close_ok_t ok;
    ok.dummy = '\0';
    return amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
}

#endif
