#ifndef CTA_MONGO_BASELINE_H
#define CTA_MONGO_BASELINE_H
#include <stddef.h>
#include <stdint.h>

int cta_mongo_baseline_linked(void);

/// The raw-libmongoc side of `cta-bench store`: the same work as CTA's Swift client, with one
/// `mongoc_client_t` on the calling thread, default write concern, documents built per insert with
/// `bson_append_*` in the shape `cta_mongo_baseline_shape` describes. Connecting (a `ping`) happens before the
/// clock starts. Each returns the elapsed seconds of the measured loop, or -1 with a message in `error`.

/// Inserts `count` documents one `insert_one` at a time, with keys `first_key ..< first_key + count`.
double cta_mongo_baseline_insert_one(const char *uri, const char *database, const char *collection, int64_t first_key,
                                     int count, char *error, size_t error_size);

/// Inserts `count` documents with `insert_many`, `batch` documents per call.
double cta_mongo_baseline_insert_many(const char *uri, const char *database, const char *collection,
                                      int64_t first_key, int count, int batch, char *error, size_t error_size);

/// Runs `count` `find` queries with `{key: k}`, limit 1, on an indexed collection whose keys are `0 ..< key_range`,
/// reading three fields of each document found. Keys visited: `(i * 7919) % key_range`.
/// `found` receives how many queries returned a document.
double cta_mongo_baseline_find_one(const char *uri, const char *database, const char *collection, int count,
                                   int64_t key_range, int64_t *found, char *error, size_t error_size);

/// Inserts `count` copies of one BSON document (`template_bytes`, `template_length` bytes) with unordered
/// `insert_many` calls of `batch` documents, the way CTA writes a batch of events keyed by their event id. Each
/// copy gets a new `_id` (a 36-character string, the shape of an event id) and `seq = first_seq + i` (in the
/// template's integer type); every other field is copied as it is. Documents are built inside the measured loop.
double cta_mongo_baseline_insert_copies(const char *uri, const char *database, const char *collection,
                                        const uint8_t *template_bytes, size_t template_length, int64_t first_seq,
                                        int count, int batch, char *error, size_t error_size);

#endif
