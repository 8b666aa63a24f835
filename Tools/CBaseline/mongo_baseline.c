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
