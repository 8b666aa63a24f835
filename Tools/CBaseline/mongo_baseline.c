#include "cta_mongo_baseline.h"
#include <mongoc/mongoc.h>
int cta_mongo_baseline_linked(void) { return mongoc_get_major_version() > 0; }
