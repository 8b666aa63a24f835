#include "cta_amqp_baseline.h"
#include <amqp.h>
int cta_amqp_baseline_linked(void) { return amqp_version_number() > 0; }
