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

/// Now, in nanoseconds of CLOCK_MONOTONIC: the one clock both sides of the live-feed bench stamp with.
uint64_t cta_baseline_now_ns(void);

/// Raw change streams, the baseline of the live feed: each on its own thread with its own client, as a subscriber
/// that watched the database itself would have.
typedef struct cta_watchers cta_watchers;

/// Opens `streams` change streams on `database` with `pipeline_bytes` (a BSON document `{pipeline: [...]}`) and
/// `maxAwaitTimeMS` = `max_await_ms`, and returns once every one is open (a change made after this returns reaches
/// all of them); NULL with a message in `error` when one could not be opened. Each stream records the time
/// (`cta_baseline_now_ns`) it received every change whose `fullDocument.seq` is in `0 ..< expected`, once.
cta_watchers *cta_watchers_open(const char *uri, const char *database, const uint8_t *pipeline_bytes,
                                size_t pipeline_length, int streams, int expected, int max_await_ms, char *error,
                                size_t error_size);

/// Waits until every stream received all `expected` changes or `timeout_ms` passed; returns the changes received
/// by all streams together, or -1 with a message in `error` when a stream failed.
int64_t cta_watchers_wait(cta_watchers *set, int timeout_ms, char *error, size_t error_size);

/// Receipt times, `streams * expected` of them, stream after stream, indexed by `seq`; 0 where none arrived. Read
/// only after `cta_watchers_wait` returned.
const uint64_t *cta_watchers_receipts(const cta_watchers *set);

/// Stops every stream (each within `max_await_ms`), joins the threads and frees everything.
void cta_watchers_close(cta_watchers *set);

/// Reads the document with string `_id` = `id` from `threads` threads, each with its own client, as fast as each
/// can for `duration_ms` (connecting is not timed), checking each has a `phase`; returns reads per second, or -1
/// with a message in `error`.
double cta_mongo_baseline_find_by_id(const char *uri, const char *database, const char *collection, const char *id,
                                     int threads, int duration_ms, char *error, size_t error_size);

#endif
