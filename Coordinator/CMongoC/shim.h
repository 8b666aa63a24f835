#ifndef CTA_CMONGOC_SHIM_H
#define CTA_CMONGOC_SHIM_H
#include <mongoc/mongoc.h>
#include <bson/bson.h>
#endif
