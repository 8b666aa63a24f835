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

/// amqp_login is variadic, which Swift cannot call: this wrapper passes PLAIN credentials.
static inline amqp_rpc_reply_t cta_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                                    int channel_max, int frame_max, int heartbeat,
                                                    const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}

#endif
