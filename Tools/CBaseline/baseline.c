#include "cta_baseline.h"
#include <amqp.h>
#include <mongoc/mongoc.h>
int cta_baseline_linked(void) { return amqp_version_number() > 0 && mongoc_get_major_version() > 0; }
