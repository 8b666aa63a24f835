#ifndef CTA_AMQP_BASELINE_H
#define CTA_AMQP_BASELINE_H
int cta_amqp_baseline_linked(void);
#endif
