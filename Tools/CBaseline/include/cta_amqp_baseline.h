#ifndef CTA_AMQP_BASELINE_H
#define CTA_AMQP_BASELINE_H

/// Publishes `count` persistent messages of `body_size` bytes to `queue` (default exchange) with publisher
/// confirms, at most `window` unconfirmed at once, straight through librabbitmq. Returns the elapsed seconds,
/// or a negative number on error (with a message on stderr).
double cta_amqp_baseline_publish(const char *host, int port, const char *queue, int count, int body_size, int window);

/// Consumes `count` messages from `queue` with `prefetch`, acknowledging every `ack_every` with multiple=true.
/// Returns the elapsed seconds, or a negative number on error.
double cta_amqp_baseline_consume(const char *host, int port, const char *queue, int count, int prefetch, int ack_every);

#endif
