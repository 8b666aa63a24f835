#ifndef CTA_CMONGOC_SHIM_H
#define CTA_CMONGOC_SHIM_H
#include <mongoc/mongoc.h>
#include <bson/bson.h>

/// `bson_t` is over-aligned, so Swift imports it only as an opaque pointer: these give the storage size and
/// alignment for the aligned allocations that libmongoc's "overwritable storage" reply parameters need.
static inline size_t cta_bson_size(void) { return sizeof(bson_t); }
static inline size_t cta_bson_alignment(void) { return BSON_ALIGNOF(bson_t); }
#endif
