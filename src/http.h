/*
 * What the session (one easy handle) and the multi (many) share: the options
 * they accept, the checking of a request's Lua arguments, the settings every
 * easy handle gets, and the shape of a result or an error pushed to Lua.
 */
#ifndef AO_HTTP_H
#define AO_HTTP_H

#include <curl/curl.h>

#include "buffer.h"
#include "compat.h"

/* CURLOPT_CURLU: libcurl 7.63 */
#if LIBCURL_VERSION_NUM >= 0x073f00
#define AO_HTTP_URL_HANDLE 1
#endif

#define AO_HTTP_DEFAULT_MAX_RESPONSE ((size_t)1024 * 1024)
#define AO_HTTP_MAX_HEADERS 64
#define AO_HTTP_MAX_METHOD 16
#define AO_HTTP_MAX_RETRY_AFTER 127

typedef struct {
    char *ca_file;
    char *proxy;
    char *user_agent;
    size_t max_response_bytes;
    int allow_insecure_tls;
} ao_http_options;

typedef struct {
    const char *data;
    size_t len;
} ao_http_text;

/* One request's arguments; the pointers borrow from Lua or from a queued copy. */
typedef struct {
    const char *method;
    size_t method_len;
    const char *url;
    size_t url_len;
    ao_http_text headers[AO_HTTP_MAX_HEADERS];
    size_t header_count;
    const char *body;          /* NULL: no body */
    size_t body_len;
    long timeout_ms;
    long connect_timeout_ms;
} ao_http_request;

/*
 * One easy handle and everything a transfer on it writes. The settings of the
 * previous request are remembered so that a repeated request only sets what
 * changed. Must not move in memory while a transfer runs (curl keeps pointers
 * to error and to the transfer itself).
 */
typedef struct {
    CURL *easy;
    size_t max_response_bytes;
    ao_buffer response;
    struct curl_slist *header_list;   /* the caller's headers, then ours (User-Agent, "Expect:") */
    size_t extra_headers;             /* how many of ours */
    char *user_agent_header;          /* "User-Agent: ...", NULL when none */
    struct curl_slist *proxy_header_list; /* that line, for a tunnel's CONNECT */
    char *url;                        /* the URL last given to libcurl, NULL when none */
    size_t url_len;
#ifdef AO_HTTP_URL_HANDLE
    CURLU *url_handle;                /* that URL, parsed once (NULL: none yet) */
#endif
    char method[AO_HTTP_MAX_METHOD + 1];
    int body_mode;                    /* -1: nothing set yet, 0: no body, 1: body */
    long timeout_ms;
    long connect_timeout_ms;
    char retry_after[AO_HTTP_MAX_RETRY_AFTER + 1];
    size_t retry_after_len;
    int has_retry_after;
    int headers_api;                  /* Retry-After read after the transfer, not by a header callback */
    int too_large;
    int out_of_memory;
    char error[CURL_ERROR_SIZE];
} ao_http_transfer;

/* curl_global_init, once per process, safe from several threads. 0 on success. */
AO_HIDDEN int ao_http_global_init(void);

/* libcurl's name for a code without the CURLE_ prefix ("COULDNT_CONNECT"). */
AO_HIDDEN const char *ao_http_code_name(CURLcode code);

/*
 * Reads the options table at idx (or nil) into o, which must be zeroed and
 * owned by a userdata whose __gc calls ao_http_options_free: this raises on a
 * bad option. extra_keys (NULL-terminated, may be NULL) are accepted and left
 * to the caller.
 */
AO_HIDDEN void ao_http_options_parse(lua_State *L, int idx, ao_http_options *o,
                                     const char *const *extra_keys);
AO_HIDDEN void ao_http_options_free(ao_http_options *o);

/* Reads and checks method, url, headers, body, timeout_ms, connect_timeout_ms from index first on; raises. */
AO_HIDDEN void ao_http_request_check(lua_State *L, int first, ao_http_request *r);

/* Creates the easy handle with every fixed setting. CURLE_OK on success. */
AO_HIDDEN CURLcode ao_http_transfer_open(ao_http_transfer *t, const ao_http_options *o);

/* Sets what this request needs and clears the previous response. r's strings must outlive the transfer. */
AO_HIDDEN CURLcode ao_http_transfer_prepare(ao_http_transfer *t, const ao_http_request *r);

/* Frees the handle and what it holds; safe on a zeroed or already closed transfer. */
AO_HIDDEN void ao_http_transfer_close(ao_http_transfer *t);

/*
 * Pushes the outcome of a finished transfer: the response table (returns 1)
 * or the error table (returns 0). Drops an unusually large response buffer so
 * an idle handle does not pin it.
 */
AO_HIDDEN int ao_http_push_outcome(lua_State *L, ao_http_transfer *t, CURLcode rc);

/* Pushes { code =, message =, curl_code = }. */
AO_HIDDEN void ao_http_push_error(lua_State *L, const char *code, const char *message, int curl_code);

#endif
