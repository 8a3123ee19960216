/*
 * core.multi{...}: many requests in flight over one libcurl multi handle.
 * A fixed number of slots each own an easy handle that is reused from one
 * transfer to the next (the multi handle's connection cache keeps the
 * connections alive across the batch); requests added beyond the slots wait
 * in a queue as private copies, because Lua may collect the strings. Only the
 * running transfers hold response buffers, so a long batch stays flat.
 *
 * perform(wait_ms, quick): with quick set, a transfer that ended with a 2xx
 * whose body is the gateway's success envelope (envelope.h) is reported as its
 * bare id, with no response table and no body string: a caller that does not
 * want the answer's data needs nothing else, and building them costs more than
 * the check.
 */
#include "multi.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "http.h"

#define MULTI_MT "choco.active_order.multi"
#define MULTI_DEFAULT_IN_FLIGHT 16
#define MULTI_MAX_IN_FLIGHT 1024
#define MULTI_DEFAULT_WAIT_MS 1000
/*
 * A quick success never drops its response buffer; ao_http_push_outcome drops
 * one above 64 KiB so an idle handle does not pin it, so anything larger takes
 * that path. (A success envelope is well under a kilobyte.)
 */
#define MULTI_QUICK_MAX_BUFFER ((size_t)64 * 1024)
/*
 * A finished request's block is kept for the next one (the requests of a batch
 * are alike, and a malloc/free pair per request shows in a batch's profile):
 * sizes are rounded up so that bodies a few bytes apart share blocks, and at
 * most one block per slot, none larger than MULTI_SPARE_MAX, is kept.
 */
#define MULTI_JOB_ROUND 256
#define MULTI_SPARE_MAX ((size_t)16 * 1024)

/* A request's own copy: the strings follow the struct in the same allocation. */
typedef struct ao_multi_job {
    struct ao_multi_job *next;
    size_t capacity;            /* bytes allocated for the struct and its strings */
    lua_Integer id;
    const char *method;
    size_t method_len;
    const char *url;
    size_t url_len;
    const char *body;           /* NULL: no body */
    size_t body_len;
    long timeout_ms;
    long connect_timeout_ms;
    size_t header_count;
    ao_http_text headers[];     /* header_count entries */
} ao_multi_job;

enum { SLOT_FREE, SLOT_RUNNING, SLOT_FINISHED };

typedef struct {
    ao_http_transfer transfer;  /* easy handle opened on first use, then reused */
    ao_multi_job *job;
    int state;
    CURLcode result;
} ao_multi_slot;

typedef struct {
    ao_http_options options;
    CURLM *multi;
    ao_multi_slot *slots;
    size_t slot_count;
    ao_multi_job *queue_head;
    ao_multi_job *queue_tail;
    ao_multi_job *spare;        /* finished requests' blocks, for reuse */
    size_t spare_count;
    size_t queued;
    size_t running;
    size_t finished;
    int closed;
    /*
     * Set while results are being pushed: any allocation there can run a
     * finalizer, and one that closes this multi or drives it must not free
     * the slots being read. close() then only sets close_pending; add() and
     * perform() refuse.
     */
    int in_use;
    int close_pending;
} ao_multi;

static ao_multi *check_open_multi(lua_State *L)
{
    ao_multi *m = luaL_checkudata(L, 1, MULTI_MT);

    if (m->closed)
        luaL_error(L, "multi is closed");
    if (m->in_use)
        luaL_error(L, "multi is busy: called while its results are being built (from a finalizer?)");
    return m;
}

static char *copy_text(char **cursor, const char *s, size_t len)
{
    char *out = *cursor;

    memcpy(out, s, len);
    out[len] = '\0';
    *cursor += len + 1;
    return out;
}

/* *sum += a + b, or -1 (sum unchanged) when that does not fit in a size_t. */
static int add_size(size_t *sum, size_t a, size_t b)
{
    if (a > (size_t)-1 - b || a + b > (size_t)-1 - *sum)
        return -1;
    *sum += a + b;
    return 0;
}

/* Gives a finished request's block back: kept for the next request, or freed. */
static void job_release(ao_multi *m, ao_multi_job *job)
{
    if (job == NULL)
        return;
    if (job->capacity <= MULTI_SPARE_MAX && m->spare_count < m->slot_count) {
        job->next = m->spare;
        m->spare = job;
        m->spare_count++;
        return;
    }
    free(job);
}

/* One block holding the request and every string it points to; NULL when out of memory. */
static ao_multi_job *job_new(ao_multi *m, lua_Integer id, const ao_http_request *r)
{
    size_t i, header_bytes = 0, strings, head, total;
    ao_multi_job *job;
    char *cursor;

    /* Every sum is checked: a body near SIZE_MAX must fail here, not wrap to a short block. */
    strings = 0;
    if (add_size(&strings, r->method_len, 1) != 0 || add_size(&strings, r->url_len, 1) != 0
        || (r->body != NULL && add_size(&strings, r->body_len, 1) != 0))
        return NULL;
    for (i = 0; i < r->header_count; i++)
        if (add_size(&header_bytes, r->headers[i].len, 1) != 0)
            return NULL;
    head = sizeof *job + r->header_count * sizeof(ao_http_text);   /* header_count <= AO_HTTP_MAX_HEADERS */
    total = head;
    if (add_size(&total, strings, header_bytes) != 0 || add_size(&total, MULTI_JOB_ROUND - 1, 0) != 0)
        return NULL;
    total -= total % MULTI_JOB_ROUND;
    if (m->spare != NULL && m->spare->capacity >= total) {
        job = m->spare;
        m->spare = job->next;
        m->spare_count--;
    } else {
        job = malloc(total);
        if (job == NULL)
            return NULL;
        job->capacity = total;
    }
    cursor = (char *)job + head;
    job->next = NULL;
    job->id = id;
    job->method_len = r->method_len;
    job->method = copy_text(&cursor, r->method, r->method_len);
    job->url_len = r->url_len;
    job->url = copy_text(&cursor, r->url, r->url_len);
    job->body_len = r->body_len;
    job->body = r->body ? copy_text(&cursor, r->body, r->body_len) : NULL;
    job->timeout_ms = r->timeout_ms;
    job->connect_timeout_ms = r->connect_timeout_ms;
    job->header_count = r->header_count;
    for (i = 0; i < r->header_count; i++) {
        job->headers[i].len = r->headers[i].len;
        job->headers[i].data = copy_text(&cursor, r->headers[i].data, r->headers[i].len);
    }
    return job;
}

static void job_request(const ao_multi_job *job, ao_http_request *r)
{
    size_t i;

    r->method = job->method;
    r->method_len = job->method_len;
    r->url = job->url;
    r->url_len = job->url_len;
    r->body = job->body;
    r->body_len = job->body_len;
    r->timeout_ms = job->timeout_ms;
    r->connect_timeout_ms = job->connect_timeout_ms;
    r->header_count = job->header_count;
    for (i = 0; i < job->header_count; i++)
        r->headers[i] = job->headers[i];
}

static void slot_finish(ao_multi *m, ao_multi_slot *slot, CURLcode result)
{
    slot->state = SLOT_FINISHED;
    slot->result = result;
    m->finished++;
}

static void slot_start(ao_multi *m, ao_multi_slot *slot, ao_multi_job *job)
{
    ao_http_transfer *t = &slot->transfer;
    ao_http_request r;
    CURLcode rc = CURLE_OK;
    CURLMcode mc;

    slot->job = job;
    if (t->easy == NULL) {
        rc = ao_http_transfer_open(t, &m->options);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(t->easy, CURLOPT_PRIVATE, (void *)slot);
        if (rc != CURLE_OK) {
            ao_http_transfer_close(t);
            slot_finish(m, slot, rc);
            return;
        }
    }
    job_request(job, &r);
    rc = ao_http_transfer_prepare(t, &r);
    if (rc != CURLE_OK) {
        slot_finish(m, slot, rc);
        return;
    }
    mc = curl_multi_add_handle(m->multi, t->easy);
    if (mc != CURLM_OK) {
        /* Reported with the multi layer's reason; no easy-level code fits better. */
        strncpy(t->error, curl_multi_strerror(mc), sizeof t->error - 1);
        t->error[sizeof t->error - 1] = '\0';
        slot_finish(m, slot, mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_FAILED_INIT);
        return;
    }
    slot->state = SLOT_RUNNING;
    m->running++;
}

/* Moves queued requests into free slots. */
static void fill_slots(ao_multi *m)
{
    size_t i;

    for (i = 0; i < m->slot_count && m->queue_head != NULL; i++) {
        ao_multi_job *job;

        if (m->slots[i].state != SLOT_FREE)
            continue;
        job = m->queue_head;
        m->queue_head = job->next;
        if (m->queue_head == NULL)
            m->queue_tail = NULL;
        m->queued--;
        job->next = NULL;
        slot_start(m, &m->slots[i], job);
    }
}

/* Takes finished transfers out of the multi handle; they are reported from their slots. */
static void collect_done(ao_multi *m)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        ao_multi_slot *slot = NULL;
        char *private_ptr = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &private_ptr);
        slot = (ao_multi_slot *)(void *)private_ptr;
        curl_multi_remove_handle(m->multi, msg->easy_handle);
        if (slot == NULL || slot->state != SLOT_RUNNING)
            continue;
        m->running--;
        slot_finish(m, slot, msg->data.result);
    }
}

/* A finished transfer that perform(wait_ms, true) reports as its bare id. */
static int quick_success(const ao_multi_slot *slot)
{
    const ao_http_transfer *t = &slot->transfer;
    long status = 0;

    if (slot->result != CURLE_OK || t->response.cap > MULTI_QUICK_MAX_BUFFER)
        return 0;
    if (curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status < 200 || status > 299)
        return 0;
    return ao_envelope_check(t->response.data, t->response.len) == AO_ENVELOPE_OK;
}

/*
 * Appends { id =, res = } or { id =, err = } (or, when quick, the bare id of a
 * quick success) for every finished slot to the table on top of the stack and
 * frees the slot. A slot is freed only after its item is in the table, so a
 * memory error while building it loses nothing.
 */
static void report_finished(lua_State *L, ao_multi *m, int quick)
{
    int count = (int)ao_rawlen(L, -1);
    size_t i;

    for (i = 0; i < m->slot_count && m->finished > 0; i++) {
        ao_multi_slot *slot = &m->slots[i];

        if (slot->state != SLOT_FINISHED)
            continue;
        if (quick && quick_success(slot)) {
            lua_pushinteger(L, slot->job->id);
        } else {
            lua_createtable(L, 0, 2);
            lua_pushinteger(L, slot->job->id);
            lua_setfield(L, -2, "id");
            if (ao_http_push_outcome(L, &slot->transfer, slot->result))
                lua_setfield(L, -2, "res");
            else
                lua_setfield(L, -2, "err");
        }
        lua_rawseti(L, -2, ++count);
        job_release(m, slot->job);
        slot->job = NULL;
        slot->state = SLOT_FREE;
        m->finished--;
    }
}

/* Protected part of perform: (multi, results, quick) -> results, with every finished slot added. */
static int multi_report(lua_State *L)
{
    ao_multi *m = lua_touserdata(L, 1);
    int quick = lua_toboolean(L, 3);

    lua_settop(L, 2);
    report_finished(L, m, quick);
    return 1;
}

static void multi_free(ao_multi *m);

/*
 * Reports the finished slots into the results table at `results` with in_use
 * set, protected so that in_use is cleared whatever happens. Returns 0, or
 * raises the error the report raised (after a close a finalizer asked for).
 */
static int report_protected(lua_State *L, ao_multi *m, int results, int quick)
{
    int status;

    lua_pushcfunction(L, multi_report);
    if (m->closed) {
        lua_pop(L, 1);
        return -1;
    }
    m->in_use = 1;
    lua_pushvalue(L, 1);
    lua_pushvalue(L, results);
    lua_pushboolean(L, quick);
    status = lua_pcall(L, 3, 1, 0);
    m->in_use = 0;
    if (m->close_pending)
        multi_free(m);
    if (status != 0)
        lua_error(L);
    lua_pop(L, 1);
    return m->closed ? -1 : 0;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static CURLMcode wait_for_activity(CURLM *multi, int timeout_ms)
{
#if LIBCURL_VERSION_NUM >= 0x074200
    return curl_multi_poll(multi, NULL, 0, timeout_ms, NULL);
#else
    return curl_multi_wait(multi, NULL, 0, timeout_ms, NULL);
#endif
}

static int multi_fail(lua_State *L, CURLMcode mc)
{
    return luaL_error(L, "multi: %s", curl_multi_strerror(mc));
}

static int multi_new(lua_State *L)
{
    static const char *const extra_keys[] = {"max_in_flight", NULL};
    ao_multi *m;
    lua_Number in_flight = MULTI_DEFAULT_IN_FLIGHT;

    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    m = ao_newuserdata(L, sizeof *m);
    memset(m, 0, sizeof *m);
    m->closed = 1;
    ao_setmetatable(L, MULTI_MT);
    ao_http_options_parse(L, 1, &m->options, extra_keys);
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "max_in_flight");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER)
                return luaL_error(L, "options: 'max_in_flight' must be a number");
            in_flight = lua_tonumber(L, -1);
            if (!(in_flight >= 1 && in_flight <= MULTI_MAX_IN_FLIGHT) || in_flight != (lua_Number)(int)in_flight)
                return luaL_error(L, "options: 'max_in_flight' must be an integer from 1 to %d",
                                  MULTI_MAX_IN_FLIGHT);
        }
        lua_pop(L, 1);
    }
    if (ao_http_global_init() != 0)
        return luaL_error(L, "multi: libcurl initialisation failed");
    m->slots = calloc((size_t)in_flight, sizeof *m->slots);
    if (m->slots == NULL)
        return luaL_error(L, "multi: out of memory");
    m->slot_count = (size_t)in_flight;
    m->multi = curl_multi_init();
    if (m->multi == NULL)
        return luaL_error(L, "multi: cannot create a libcurl multi handle");
    /*
     * libcurl sizes its connection cache at four times the handles added at
     * the moment, so the cache shrinks as a batch drains and closes the idle
     * connections the next batch would have reused: keep one per slot.
     */
    if (curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long)m->slot_count) != CURLM_OK)
        return luaL_error(L, "multi: cannot size the connection cache");
    m->closed = 0;
    return 1;
}

static int multi_add(lua_State *L)
{
    ao_multi *m = check_open_multi(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    ao_http_request r;
    ao_multi_job *job;

    ao_http_request_check(L, 3, &r);
    job = job_new(m, id, &r);
    if (job == NULL)
        return luaL_error(L, "multi: out of memory");
    if (m->queue_tail != NULL)
        m->queue_tail->next = job;
    else
        m->queue_head = job;
    m->queue_tail = job;
    m->queued++;
    fill_slots(m);
    return 0;
}

static int multi_perform(lua_State *L)
{
    ao_multi *m = check_open_multi(L);
    lua_Number wait_ms = luaL_optnumber(L, 2, MULTI_DEFAULT_WAIT_MS);
    int quick = lua_toboolean(L, 3);
    double deadline;

    if (!(wait_ms >= 0 && wait_ms <= 2147483647.0))
        return luaL_argerror(L, 2, "wait_ms must be from 0 to 2^31-1");
    deadline = now_ms() + wait_ms;
    lua_settop(L, 1);
    lua_newtable(L);
    /* Allocating may have run a finalizer that closed this multi. */
    if (m->closed)
        return 1;
    for (;;) {
        int still_running;
        double remaining;
        CURLMcode mc = curl_multi_perform(m->multi, &still_running);

        if (mc != CURLM_OK)
            return multi_fail(L, mc);
        collect_done(m);
        if (m->finished > 0) {
            /* -1: a finalizer closed the multi meanwhile; the results so far are still returned. */
            if (report_protected(L, m, 2, quick) != 0)
                break;
            size_t started = m->running;

            fill_slots(m);
            /* Start the refilled transfers now, so they run while Lua handles these results. */
            if (m->running > started) {
                /*
                 * The finished slots are already freed into the result table:
                 * raising now would lose them, so a failure here is left for
                 * the next perform to report.
                 */
                (void)curl_multi_perform(m->multi, &still_running);
            }
            break;
        }
        if (m->running == 0)
            break;
        remaining = deadline - now_ms();
        if (remaining <= 0)
            break;
        mc = wait_for_activity(m->multi, remaining < 1 ? 1 : (int)remaining);
        if (mc != CURLM_OK)
            return multi_fail(L, mc);
    }
    return 1;
}

static int multi_in_flight(lua_State *L)
{
    ao_multi *m = check_open_multi(L);

    lua_pushinteger(L, (lua_Integer)(m->queued + m->running + m->finished));
    return 1;
}

static int multi_close(lua_State *L)
{
    ao_multi *m = luaL_checkudata(L, 1, MULTI_MT);

    if (m->in_use) {
        /* The perform under way closes it once its results are built. */
        m->close_pending = 1;
        return 0;
    }
    multi_free(m);
    return 0;
}

static void multi_free(ao_multi *m)
{
    size_t i;

    for (i = 0; i < m->slot_count; i++) {
        ao_multi_slot *slot = &m->slots[i];

        if (slot->state == SLOT_RUNNING && m->multi != NULL)
            curl_multi_remove_handle(m->multi, slot->transfer.easy);
        ao_http_transfer_close(&slot->transfer);
        free(slot->job);
        slot->job = NULL;
        slot->state = SLOT_FREE;
    }
    while (m->queue_head != NULL) {
        ao_multi_job *next = m->queue_head->next;

        free(m->queue_head);
        m->queue_head = next;
    }
    m->queue_tail = NULL;
    while (m->spare != NULL) {
        ao_multi_job *next = m->spare->next;

        free(m->spare);
        m->spare = next;
    }
    m->spare_count = 0;
    if (m->multi != NULL)
        curl_multi_cleanup(m->multi);
    m->multi = NULL;
    free(m->slots);
    m->slots = NULL;
    m->slot_count = 0;
    m->queued = m->running = m->finished = 0;
    ao_http_options_free(&m->options);
    m->closed = 1;
    m->close_pending = 0;
}

static int multi_is_closed(lua_State *L)
{
    ao_multi *m = luaL_checkudata(L, 1, MULTI_MT);

    lua_pushboolean(L, m->closed || m->close_pending);
    return 1;
}

static int multi_tostring(lua_State *L)
{
    ao_multi *m = luaL_checkudata(L, 1, MULTI_MT);

    lua_pushstring(L, m->closed || m->close_pending ? MULTI_MT " (closed)" : MULTI_MT);
    return 1;
}

static const luaL_Reg multi_methods[] = {
    {"add", multi_add},
    {"perform", multi_perform},
    {"in_flight", multi_in_flight},
    {"close", multi_close},
    {"is_closed", multi_is_closed},
    {NULL, NULL}
};

void ao_multi_register(lua_State *L)
{
    luaL_newmetatable(L, MULTI_MT);
    lua_createtable(L, 0, 5);
    ao_setfuncs(L, multi_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, multi_close);
    lua_setfield(L, -2, "__gc");
    /* Lua 5.4's to-be-closed variables; an ordinary field elsewhere. */
    lua_pushcfunction(L, multi_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, multi_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, multi_new);
    lua_setfield(L, -2, "multi");
}
