#include "cta_mongo_baseline.h"

#include <mongoc/mongoc.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int cta_mongo_baseline_linked(void) { return mongoc_get_major_version() > 0; }

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_error(char *out, size_t size, const char *what, const bson_error_t *error) {
    if (out && size) {
        snprintf(out, size, "%s: %s", what, error ? error->message : "failed");
    }
}

/// The document both sides write (about 200 bytes as BSON):
/// { _id: ObjectId, key: int64, name: "machine-<key>", pool: "linux-x86_64", state: "idle", cores: int32 8,
///   memoryBytes: int64, createdAt: date, tags: ["ci", "linux"], note: 48 characters }
static void build_document(bson_t *doc, int64_t key) {
    bson_oid_t oid;
    char name[32];
    bson_t tags;
    bson_oid_init(&oid, NULL);
    snprintf(name, sizeof name, "machine-%06lld", (long long)key);
    bson_append_oid(doc, "_id", 3, &oid);
    bson_append_int64(doc, "key", 3, key);
    bson_append_utf8(doc, "name", 4, name, -1);
    bson_append_utf8(doc, "pool", 4, "linux-x86_64", -1);
    bson_append_utf8(doc, "state", 5, "idle", -1);
    bson_append_int32(doc, "cores", 5, 8);
    bson_append_int64(doc, "memoryBytes", 11, 34359738368LL);
    bson_append_date_time(doc, "createdAt", 9, 1700000000000LL + key);
    bson_append_array_begin(doc, "tags", 4, &tags);
    bson_append_utf8(&tags, "0", 1, "ci", -1);
    bson_append_utf8(&tags, "1", 1, "linux", -1);
    bson_append_array_end(doc, &tags);
    bson_append_utf8(doc, "note", 4, "benchmark document with a few fields of payload", -1);
}

/// A connected client and its collection; NULL client on failure (message in `error`).
static mongoc_client_t *open_client(const char *uri_string, const char *database, const char *collection,
                                    mongoc_collection_t **coll, char *error, size_t error_size) {
    bson_error_t err;
    mongoc_init(); /* runs once per process (bson_once); CTAMongo may have run it already */
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_string, &err);
    if (!uri) {
        set_error(error, error_size, "uri", &err);
        return NULL;
    }
    mongoc_client_t *client = mongoc_client_new_from_uri_with_error(uri, &err);
    mongoc_uri_destroy(uri);
    if (!client) {
        set_error(error, error_size, "client", &err);
        return NULL;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    bson_t ping = BSON_INITIALIZER;
    bson_append_int32(&ping, "ping", 4, 1);
    bool ok = mongoc_client_command_simple(client, "admin", &ping, NULL, NULL, &err);
    bson_destroy(&ping);
    if (!ok) {
        set_error(error, error_size, "ping", &err);
        mongoc_client_destroy(client);
        return NULL;
    }
    *coll = mongoc_client_get_collection(client, database, collection);
    return client;
}

double cta_mongo_baseline_insert_one(const char *uri, const char *database, const char *collection, int64_t first_key,
                                     int count, char *error, size_t error_size) {
    mongoc_collection_t *coll = NULL;
    mongoc_client_t *client = open_client(uri, database, collection, &coll, error, error_size);
    if (!client) return -1;
    double result = -1;
    bson_error_t err;
    double start = now_seconds();
    int i;
    for (i = 0; i < count; i++) {
        bson_t *doc = bson_new();
        build_document(doc, first_key + i);
        bool ok = mongoc_collection_insert_one(coll, doc, NULL, NULL, &err);
        bson_destroy(doc);
        if (!ok) {
            set_error(error, error_size, "insert_one", &err);
            break;
        }
    }
    if (i == count) result = now_seconds() - start;
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return result;
}

double cta_mongo_baseline_insert_many(const char *uri, const char *database, const char *collection,
                                      int64_t first_key, int count, int batch, char *error, size_t error_size) {
    mongoc_collection_t *coll = NULL;
    mongoc_client_t *client = open_client(uri, database, collection, &coll, error, error_size);
    if (!client) return -1;
    if (batch < 1) batch = 1;
    bson_t **docs = bson_malloc0(sizeof(bson_t *) * (size_t)batch);
    double result = -1;
    bson_error_t err;
    double start = now_seconds();
    int done = 0;
    while (done < count) {
        int n = count - done < batch ? count - done : batch;
        for (int j = 0; j < n; j++) {
            docs[j] = bson_new();
            build_document(docs[j], first_key + done + j);
        }
        bool ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)n, NULL, NULL, &err);
        for (int j = 0; j < n; j++) bson_destroy(docs[j]);
        if (!ok) {
            set_error(error, error_size, "insert_many", &err);
            break;
        }
        done += n;
    }
    if (done == count) result = now_seconds() - start;
    bson_free(docs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return result;
}

double cta_mongo_baseline_find_one(const char *uri, const char *database, const char *collection, int count,
                                   int64_t key_range, int64_t *found, char *error, size_t error_size) {
    mongoc_collection_t *coll = NULL;
    mongoc_client_t *client = open_client(uri, database, collection, &coll, error, error_size);
    if (!client) return -1;
    bson_t opts = BSON_INITIALIZER;
    bson_append_int64(&opts, "limit", 5, 1);
    bson_append_bool(&opts, "singleBatch", 11, true);
    int64_t hits = 0;
    double result = -1;
    bson_error_t err;
    const bson_t *doc;
    double start = now_seconds();
    int i;
    for (i = 0; i < count; i++) {
        int64_t key = ((int64_t)i * 7919) % key_range;
        bson_t filter = BSON_INITIALIZER;
        bson_append_int64(&filter, "key", 3, key);
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
        while (mongoc_cursor_next(cursor, &doc)) {
            bson_iter_t iter;
            int64_t k = -1;
            uint32_t len = 0;
            int32_t cores = 0;
            if (bson_iter_init_find(&iter, doc, "key")) k = bson_iter_int64(&iter);
            if (bson_iter_init_find(&iter, doc, "name")) (void)bson_iter_utf8(&iter, &len);
            if (bson_iter_init_find(&iter, doc, "cores")) cores = bson_iter_int32(&iter);
            if (k == key && len > 0 && cores > 0) hits++;
        }
        bool failed = mongoc_cursor_error(cursor, &err);
        mongoc_cursor_destroy(cursor);
        bson_destroy(&filter);
        if (failed) {
            set_error(error, error_size, "find", &err);
            break;
        }
    }
    if (i == count) result = now_seconds() - start;
    if (found) *found = hits;
    bson_destroy(&opts);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return result;
}

/// A copy of `template` with a new string `_id` and `seq` = `seq`; false if the template is not valid BSON.
static bool build_copy(bson_t *doc, const bson_t *template, uint32_t id_prefix, int64_t seq) {
    bson_iter_t iter;
    if (!bson_iter_init(&iter, template)) return false;
    while (bson_iter_next(&iter)) {
        const char *key = bson_iter_key(&iter);
        uint32_t key_length = bson_iter_key_len(&iter);
        if (strcmp(key, "_id") == 0) {
            char id[40];
            snprintf(id, sizeof id, "%08x-0000-4000-8000-%012llx", id_prefix, (unsigned long long)seq);
            bson_append_utf8(doc, "_id", 3, id, -1);
        } else if (strcmp(key, "seq") == 0 && BSON_ITER_HOLDS_INT32(&iter)) {
            bson_append_int32(doc, key, (int)key_length, (int32_t)seq);
        } else if (strcmp(key, "seq") == 0) {
            bson_append_int64(doc, key, (int)key_length, seq);
        } else {
            bson_append_iter(doc, key, (int)key_length, &iter);
        }
    }
    return true;
}

double cta_mongo_baseline_insert_copies(const char *uri, const char *database, const char *collection,
                                        const uint8_t *template_bytes, size_t template_length, int64_t first_seq,
                                        int count, int batch, char *error, size_t error_size) {
    bson_t template;
    if (!bson_init_static(&template, template_bytes, template_length)) {
        set_error(error, error_size, "template", NULL);
        return -1;
    }
    mongoc_collection_t *coll = NULL;
    mongoc_client_t *client = open_client(uri, database, collection, &coll, error, error_size);
    if (!client) return -1;
    if (batch < 1) batch = 1;
    bson_t **docs = bson_malloc0(sizeof(bson_t *) * (size_t)batch);
    bson_t opts = BSON_INITIALIZER;
    bson_append_bool(&opts, "ordered", 7, false);
    /* Distinct ids from one run to the next, in case a collection is reused. */
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    uint32_t id_prefix = (uint32_t)oid.bytes[8] << 24 | (uint32_t)oid.bytes[9] << 16 | (uint32_t)oid.bytes[10] << 8 |
                         (uint32_t)oid.bytes[11];
    double result = -1;
    bson_error_t err;
    double start = now_seconds();
    int done = 0;
    while (done < count) {
        int n = count - done < batch ? count - done : batch;
        bool built = true;
        for (int j = 0; j < n; j++) {
            docs[j] = bson_new();
            built = build_copy(docs[j], &template, id_prefix, first_seq + done + j) && built;
        }
        bool ok = built && mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)n, &opts, NULL, &err);
        for (int j = 0; j < n; j++) bson_destroy(docs[j]);
        if (!ok) {
            set_error(error, error_size, built ? "insert_many" : "template", built ? &err : NULL);
            break;
        }
        done += n;
    }
    if (done == count) result = now_seconds() - start;
    bson_destroy(&opts);
    bson_free(docs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return result;
}

/* MARK: The live feed's baselines */

#include <pthread.h>
#include <stdatomic.h>

uint64_t cta_baseline_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct cta_watchers;

typedef struct {
    struct cta_watchers *set;
    int index;
    pthread_t thread;
    bool started;
} cta_watcher;

struct cta_watchers {
    char *uri;
    char *database;
    bson_t *pipeline;
    int max_await_ms;
    int streams;
    int expected;
    uint64_t *receipts; /* streams * expected */
    int *counts;        /* per stream, under lock */
    int opened;         /* streams open or failed, under lock */
    int complete;       /* streams that received every change, under lock */
    bool failed;        /* under lock */
    char error[256];    /* under lock */
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    cta_watcher *threads;
};

static void watchers_fail(struct cta_watchers *set, const char *what, const bson_error_t *error) {
    pthread_mutex_lock(&set->lock);
    if (!set->failed) {
        set->failed = true;
        set_error(set->error, sizeof set->error, what, error);
    }
    pthread_cond_broadcast(&set->changed);
    pthread_mutex_unlock(&set->lock);
}

static void *watcher_main(void *argument) {
    cta_watcher *self = argument;
    struct cta_watchers *set = self->set;
    char message[256] = {0};
    mongoc_collection_t *unused = NULL;
    mongoc_client_t *client = open_client(set->uri, set->database, "results", &unused, message, sizeof message);
    mongoc_change_stream_t *stream = NULL;
    bool open = false;
    if (client) {
        mongoc_database_t *database = mongoc_client_get_database(client, set->database);
        bson_t opts = BSON_INITIALIZER;
        bson_append_int64(&opts, "maxAwaitTimeMS", 14, set->max_await_ms);
        stream = mongoc_database_watch(database, set->pipeline, &opts);
        bson_destroy(&opts);
        mongoc_database_destroy(database);
        bson_error_t err;
        const bson_t *reply = NULL;
        if (mongoc_change_stream_error_document(stream, &err, &reply)) {
            watchers_fail(set, "watch", &err);
        } else {
            open = true;
        }
    } else {
        pthread_mutex_lock(&set->lock);
        if (!set->failed) {
            set->failed = true;
            snprintf(set->error, sizeof set->error, "%s", message);
        }
        pthread_mutex_unlock(&set->lock);
    }
    pthread_mutex_lock(&set->lock);
    set->opened++;
    pthread_cond_broadcast(&set->changed);
    pthread_mutex_unlock(&set->lock);

    uint64_t *mine = set->receipts + (size_t)self->index * (size_t)set->expected;
    int received = 0;
    while (open && !atomic_load(&set->stop) && received < set->expected) {
        const bson_t *change = NULL;
        if (mongoc_change_stream_next(stream, &change)) {
            uint64_t at = cta_baseline_now_ns();
            bson_iter_t iter, field;
            int64_t seq = -1;
            if (bson_iter_init(&iter, change) && bson_iter_find_descendant(&iter, "fullDocument.seq", &field) &&
                BSON_ITER_HOLDS_NUMBER(&field)) {
                seq = bson_iter_as_int64(&field);
            }
            if (seq >= 0 && seq < set->expected && mine[seq] == 0) {
                mine[seq] = at;
                received++;
                pthread_mutex_lock(&set->lock);
                set->counts[self->index] = received;
                if (received == set->expected) {
                    set->complete++;
                    pthread_cond_broadcast(&set->changed);
                }
                pthread_mutex_unlock(&set->lock);
            }
        } else {
            bson_error_t err;
            const bson_t *reply = NULL;
            if (mongoc_change_stream_error_document(stream, &err, &reply)) {
                watchers_fail(set, "change stream", &err);
                break;
            }
        }
    }
    if (stream) mongoc_change_stream_destroy(stream);
    if (unused) mongoc_collection_destroy(unused);
    if (client) mongoc_client_destroy(client);
    return NULL;
}

cta_watchers *cta_watchers_open(const char *uri, const char *database, const uint8_t *pipeline_bytes,
                                size_t pipeline_length, int streams, int expected, int max_await_ms, char *error,
                                size_t error_size) {
    if (streams < 1 || expected < 1) {
        snprintf(error, error_size, "streams and expected must be positive");
        return NULL;
    }
    bson_t given;
    if (!bson_init_static(&given, pipeline_bytes, pipeline_length)) {
        snprintf(error, error_size, "the pipeline is not a BSON document");
        return NULL;
    }
    struct cta_watchers *set = bson_malloc0(sizeof *set);
    /* A copy on the heap (a bson_t must not be moved): the caller's bytes may go away once this returns. */
    set->pipeline = bson_copy(&given);
    set->uri = bson_strdup(uri);
    set->database = bson_strdup(database);
    set->max_await_ms = max_await_ms;
    set->streams = streams;
    set->expected = expected;
    set->receipts = bson_malloc0(sizeof(uint64_t) * (size_t)streams * (size_t)expected);
    set->counts = bson_malloc0(sizeof(int) * (size_t)streams);
    set->threads = bson_malloc0(sizeof(cta_watcher) * (size_t)streams);
    atomic_init(&set->stop, false);
    pthread_mutex_init(&set->lock, NULL);
    pthread_cond_init(&set->changed, NULL);
    mongoc_init();
    int launched = 0;
    for (int i = 0; i < streams; i++) {
        set->threads[i].set = set;
        set->threads[i].index = i;
        if (pthread_create(&set->threads[i].thread, NULL, watcher_main, &set->threads[i]) != 0) break;
        set->threads[i].started = true;
        launched++;
    }
    pthread_mutex_lock(&set->lock);
    if (launched < streams && !set->failed) {
        set->failed = true;
        snprintf(set->error, sizeof set->error, "could start only %d of %d threads", launched, streams);
    }
    while (set->opened < launched) pthread_cond_wait(&set->changed, &set->lock);
    bool failed = set->failed;
    if (failed) snprintf(error, error_size, "%s", set->error);
    pthread_mutex_unlock(&set->lock);
    if (failed) {
        cta_watchers_close(set);
        return NULL;
    }
    return set;
}

int64_t cta_watchers_wait(cta_watchers *set, int timeout_ms, char *error, size_t error_size) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&set->lock);
    while (set->complete < set->streams && !set->failed) {
        if (pthread_cond_timedwait(&set->changed, &set->lock, &deadline) != 0) break;
    }
    int64_t total = 0;
    for (int i = 0; i < set->streams; i++) total += set->counts[i];
    if (set->failed) {
        snprintf(error, error_size, "%s", set->error);
        total = -1;
    }
    pthread_mutex_unlock(&set->lock);
    return total;
}

const uint64_t *cta_watchers_receipts(const cta_watchers *set) { return set->receipts; }

void cta_watchers_close(cta_watchers *set) {
    if (!set) return;
    atomic_store(&set->stop, true);
    for (int i = 0; i < set->streams; i++) {
        if (set->threads[i].started) pthread_join(set->threads[i].thread, NULL);
    }
    pthread_mutex_destroy(&set->lock);
    pthread_cond_destroy(&set->changed);
    bson_destroy(set->pipeline);
    bson_free(set->uri);
    bson_free(set->database);
    bson_free(set->receipts);
    bson_free(set->counts);
    bson_free(set->threads);
    bson_free(set);
}

typedef struct {
    const char *uri;
    const char *database;
    const char *collection;
    const char *id;
    pthread_barrier_t *connected; /* every thread and the caller: all connected */
    pthread_barrier_t *started;   /* every thread and the caller: the clock started */
    const uint64_t *deadline_ns;  /* set by the caller between the two */
    int64_t done;
    char error[256];
} cta_finder;

static void *finder_main(void *argument) {
    cta_finder *self = argument;
    mongoc_collection_t *coll = NULL;
    mongoc_client_t *client = open_client(self->uri, self->database, self->collection, &coll, self->error,
                                          sizeof self->error);
    pthread_barrier_wait(self->connected);
    pthread_barrier_wait(self->started);
    if (!client) {
        self->done = -1;
        return NULL;
    }
    bson_t opts = BSON_INITIALIZER;
    bson_append_int64(&opts, "limit", 5, 1);
    bson_append_bool(&opts, "singleBatch", 11, true);
    bson_t filter = BSON_INITIALIZER;
    bson_append_utf8(&filter, "_id", 3, self->id, -1);
    bson_error_t err;
    const bson_t *doc;
    uint64_t deadline = *self->deadline_ns;
    while (cta_baseline_now_ns() < deadline) {
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
        bool found = false;
        while (mongoc_cursor_next(cursor, &doc)) {
            bson_iter_t iter;
            uint32_t length = 0;
            if (bson_iter_init_find(&iter, doc, "phase") && BSON_ITER_HOLDS_UTF8(&iter)) {
                (void)bson_iter_utf8(&iter, &length);
                found = length > 0;
            }
        }
        bool failed = mongoc_cursor_error(cursor, &err);
        mongoc_cursor_destroy(cursor);
        if (failed || !found) {
            if (failed) {
                set_error(self->error, sizeof self->error, "find", &err);
            } else {
                snprintf(self->error, sizeof self->error, "find: no document with a phase");
            }
            self->done = -1;
            break;
        }
        self->done++;
    }
    bson_destroy(&filter);
    bson_destroy(&opts);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return NULL;
}

double cta_mongo_baseline_find_by_id(const char *uri, const char *database, const char *collection, const char *id,
                                     int threads, int duration_ms, char *error, size_t error_size) {
    if (threads < 1) threads = 1;
    cta_finder *finders = bson_malloc0(sizeof(cta_finder) * (size_t)threads);
    pthread_t *handles = bson_malloc0(sizeof(pthread_t) * (size_t)threads);
    pthread_barrier_t connected, started;
    pthread_barrier_init(&connected, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&started, NULL, (unsigned)threads + 1);
    uint64_t deadline = 0;
    mongoc_init();
    for (int i = 0; i < threads; i++) {
        finders[i] = (cta_finder){uri, database, collection, id, &connected, &started, &deadline, 0, {0}};
        if (pthread_create(&handles[i], NULL, finder_main, &finders[i]) != 0) {
            /* The barriers count every thread: without all of them nothing can go on. */
            snprintf(error, error_size, "could not start thread %d of %d", i + 1, threads);
            abort();
        }
    }
    /* Connecting is not timed: the clock starts once every thread has its connection. */
    pthread_barrier_wait(&connected);
    uint64_t start = cta_baseline_now_ns();
    deadline = start + (uint64_t)duration_ms * 1000000ull;
    pthread_barrier_wait(&started);
    int64_t total = 0;
    bool failed = false;
    for (int i = 0; i < threads; i++) {
        pthread_join(handles[i], NULL);
        if (finders[i].done < 0) {
            if (!failed) snprintf(error, error_size, "%s", finders[i].error);
            failed = true;
        } else {
            total += finders[i].done;
        }
    }
    double elapsed = (double)(cta_baseline_now_ns() - start) / 1e9;
    pthread_barrier_destroy(&connected);
    pthread_barrier_destroy(&started);
    bson_free(finders);
    bson_free(handles);
    return failed ? -1 : (double)total / elapsed;
}
