#include "http.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A response buffer grown beyond this is released after the transfer rather than kept for the next one. */
#define AO_HTTP_KEEP_BUFFER ((size_t)64 * 1024)
#define AO_HTTP_MAX_RESPONSE_LIMIT ((size_t)1024 * 1024 * 1024)
#define AO_HTTP_MAX_TIMEOUT_MS 2147483647.0

/*
 * curl_global_init is not thread-safe before libcurl 7.84, and this module is
 * also loaded from nginx worker threads.
 */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result = CURLE_FAILED_INIT;

static void global_init_once(void)
{
    global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int ao_http_global_init(void)
{
    if (pthread_once(&global_once, global_init_once) != 0)
        return -1;
    return global_result == CURLE_OK ? 0 : -1;
}

/* Indexed by code number (stable across libcurl versions), as of libcurl 7.88. */
static const char *const code_names[] = {
    [0] = "OK",
    [1] = "UNSUPPORTED_PROTOCOL",
    [2] = "FAILED_INIT",
    [3] = "URL_MALFORMAT",
    [4] = "NOT_BUILT_IN",
    [5] = "COULDNT_RESOLVE_PROXY",
    [6] = "COULDNT_RESOLVE_HOST",
    [7] = "COULDNT_CONNECT",
    [8] = "WEIRD_SERVER_REPLY",
    [9] = "REMOTE_ACCESS_DENIED",
    [10] = "FTP_ACCEPT_FAILED",
    [11] = "FTP_WEIRD_PASS_REPLY",
    [12] = "FTP_ACCEPT_TIMEOUT",
    [13] = "FTP_WEIRD_PASV_REPLY",
    [14] = "FTP_WEIRD_227_FORMAT",
    [15] = "FTP_CANT_GET_HOST",
    [16] = "HTTP2",
    [17] = "FTP_COULDNT_SET_TYPE",
    [18] = "PARTIAL_FILE",
    [19] = "FTP_COULDNT_RETR_FILE",
    [20] = "OBSOLETE20",
    [21] = "QUOTE_ERROR",
    [22] = "HTTP_RETURNED_ERROR",
    [23] = "WRITE_ERROR",
    [24] = "OBSOLETE24",
    [25] = "UPLOAD_FAILED",
    [26] = "READ_ERROR",
    [27] = "OUT_OF_MEMORY",
    [28] = "OPERATION_TIMEDOUT",
    [29] = "OBSOLETE29",
    [30] = "FTP_PORT_FAILED",
    [31] = "FTP_COULDNT_USE_REST",
    [32] = "OBSOLETE32",
    [33] = "RANGE_ERROR",
    [34] = "HTTP_POST_ERROR",
    [35] = "SSL_CONNECT_ERROR",
    [36] = "BAD_DOWNLOAD_RESUME",
    [37] = "FILE_COULDNT_READ_FILE",
    [38] = "LDAP_CANNOT_BIND",
    [39] = "LDAP_SEARCH_FAILED",
    [40] = "OBSOLETE40",
    [41] = "FUNCTION_NOT_FOUND",
    [42] = "ABORTED_BY_CALLBACK",
    [43] = "BAD_FUNCTION_ARGUMENT",
    [44] = "OBSOLETE44",
    [45] = "INTERFACE_FAILED",
    [46] = "OBSOLETE46",
    [47] = "TOO_MANY_REDIRECTS",
    [48] = "UNKNOWN_OPTION",
    [49] = "SETOPT_OPTION_SYNTAX",
    [50] = "OBSOLETE50",
    [51] = "OBSOLETE51",
    [52] = "GOT_NOTHING",
    [53] = "SSL_ENGINE_NOTFOUND",
    [54] = "SSL_ENGINE_SETFAILED",
    [55] = "SEND_ERROR",
    [56] = "RECV_ERROR",
    [57] = "OBSOLETE57",
    [58] = "SSL_CERTPROBLEM",
    [59] = "SSL_CIPHER",
    [60] = "PEER_FAILED_VERIFICATION",
    [61] = "BAD_CONTENT_ENCODING",
    [62] = "OBSOLETE62",
    [63] = "FILESIZE_EXCEEDED",
    [64] = "USE_SSL_FAILED",
    [65] = "SEND_FAIL_REWIND",
    [66] = "SSL_ENGINE_INITFAILED",
    [67] = "LOGIN_DENIED",
    [68] = "TFTP_NOTFOUND",
    [69] = "TFTP_PERM",
    [70] = "REMOTE_DISK_FULL",
    [71] = "TFTP_ILLEGAL",
    [72] = "TFTP_UNKNOWNID",
    [73] = "REMOTE_FILE_EXISTS",
    [74] = "TFTP_NOSUCHUSER",
    [75] = "OBSOLETE75",
    [76] = "OBSOLETE76",
    [77] = "SSL_CACERT_BADFILE",
    [78] = "REMOTE_FILE_NOT_FOUND",
    [79] = "SSH",
    [80] = "SSL_SHUTDOWN_FAILED",
    [81] = "AGAIN",
    [82] = "SSL_CRL_BADFILE",
    [83] = "SSL_ISSUER_ERROR",
    [84] = "FTP_PRET_FAILED",
    [85] = "RTSP_CSEQ_ERROR",
    [86] = "RTSP_SESSION_ERROR",
    [87] = "FTP_BAD_FILE_LIST",
    [88] = "CHUNK_FAILED",
    [89] = "NO_CONNECTION_AVAILABLE",
    [90] = "SSL_PINNEDPUBKEYNOTMATCH",
    [91] = "SSL_INVALIDCERTSTATUS",
    [92] = "HTTP2_STREAM",
    [93] = "RECURSIVE_API_CALL",
    [94] = "AUTH_ERROR",
    [95] = "HTTP3",
    [96] = "QUIC_CONNECT_ERROR",
    [97] = "PROXY",
    [98] = "SSL_CLIENTCERT",
    [99] = "UNRECOVERABLE_POLL",
};

const char *ao_http_code_name(CURLcode code)
{
    size_t i = (size_t)code;

    if (i < sizeof code_names / sizeof code_names[0] && code_names[i] != NULL)
        return code_names[i];
    return "UNKNOWN";
}

/* ---- options ---- */

static const char *const option_keys[] = {
    "ca_file", "proxy", "user_agent", "max_response_bytes", "allow_insecure_tls", NULL
};

static int key_listed(const char *key, const char *const *keys)
{
    if (keys == NULL)
        return 0;
    for (; *keys != NULL; keys++) {
        if (strcmp(key, *keys) == 0)
            return 1;
    }
    return 0;
}

static void check_option_keys(lua_State *L, int idx, const char *const *extra_keys)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *key;
        size_t len;

        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            luaL_error(L, "options: keys must be strings");
        }
        key = lua_tolstring(L, -1, &len);
        /* "ca_file\0x" must not pass as ca_file: strcmp would stop at the NUL. */
        if (strlen(key) != len || (!key_listed(key, option_keys) && !key_listed(key, extra_keys)))
            luaL_error(L, "options: unknown option '%s'", key);
    }
}

/* The copy is owned by the options struct, so a later raise cannot leak it. */
static void copy_string_option(lua_State *L, int idx, const char *name, char **out)
{
    size_t len;
    const char *s;

    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "options: '%s' must be a string", name);
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
        luaL_error(L, "options: '%s' contains a NUL byte", name);
    *out = malloc(len + 1);
    if (*out == NULL)
        luaL_error(L, "options: out of memory");
    memcpy(*out, s, len + 1);
    lua_pop(L, 1);
}

void ao_http_options_parse(lua_State *L, int idx, ao_http_options *o, const char *const *extra_keys)
{
    idx = ao_absindex(L, idx);
    o->max_response_bytes = AO_HTTP_DEFAULT_MAX_RESPONSE;
    o->allow_insecure_tls = 0;
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    check_option_keys(L, idx, extra_keys);
    copy_string_option(L, idx, "ca_file", &o->ca_file);
    copy_string_option(L, idx, "proxy", &o->proxy);
    copy_string_option(L, idx, "user_agent", &o->user_agent);
    /* it becomes a header line of every request */
    if (o->user_agent != NULL && strpbrk(o->user_agent, "\r\n") != NULL)
        luaL_error(L, "options: 'user_agent' contains CR or LF");

    lua_getfield(L, idx, "max_response_bytes");
    if (!lua_isnil(L, -1)) {
        lua_Number n;

        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "options: 'max_response_bytes' must be a number");
        n = lua_tonumber(L, -1);
        if (!(n >= 1 && n <= (lua_Number)AO_HTTP_MAX_RESPONSE_LIMIT) || n != (lua_Number)(size_t)n)
            luaL_error(L, "options: 'max_response_bytes' must be an integer from 1 to %d",
                       (int)AO_HTTP_MAX_RESPONSE_LIMIT);
        o->max_response_bytes = (size_t)n;
    }
    lua_pop(L, 1);

    lua_getfield(L, idx, "allow_insecure_tls");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            luaL_error(L, "options: 'allow_insecure_tls' must be a boolean");
        o->allow_insecure_tls = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
}

void ao_http_options_free(ao_http_options *o)
{
    free(o->ca_file);
    free(o->proxy);
    free(o->user_agent);
    o->ca_file = NULL;
    o->proxy = NULL;
    o->user_agent = NULL;
}

/* ---- request arguments ---- */

/* RFC 9110 token characters, without relying on the C locale. */
static int is_token_char(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static long check_ms(lua_State *L, int idx)
{
    lua_Number n = luaL_checknumber(L, idx);

    if (!(n >= 1 && n <= AO_HTTP_MAX_TIMEOUT_MS) || n != (lua_Number)(long)n)
        luaL_argerror(L, idx, "milliseconds must be a whole number from 1 to 2^31-1");
    return (long)n;
}

static void check_headers(lua_State *L, int idx, ao_http_request *r)
{
    size_t i, n;

    r->header_count = 0;
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    n = ao_rawlen(L, idx);
    if (n > AO_HTTP_MAX_HEADERS)
        luaL_argerror(L, idx, "too many headers");
    for (i = 0; i < n; i++) {
        size_t len;
        const char *s;

        lua_rawgeti(L, idx, (int)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, idx, "headers must be strings");
        s = lua_tolstring(L, -1, &len);
        /* The table on the stack keeps the string alive after the pop. */
        lua_pop(L, 1);
        if (memchr(s, '\0', len) || memchr(s, '\r', len) || memchr(s, '\n', len))
            luaL_argerror(L, idx, "a header contains CR, LF or NUL");
        if (len == 0 || memchr(s, ':', len) == NULL || s[0] == ':')
            luaL_argerror(L, idx, "a header must be 'Name: value'");
        r->headers[i].data = s;
        r->headers[i].len = len;
    }
    r->header_count = n;
}

void ao_http_request_check(lua_State *L, int first, ao_http_request *r)
{
    size_t i;

    /* Strings only: a number would be silently converted. */
    luaL_checktype(L, first, LUA_TSTRING);
    luaL_checktype(L, first + 1, LUA_TSTRING);
    r->method = lua_tolstring(L, first, &r->method_len);
    if (r->method_len == 0 || r->method_len > AO_HTTP_MAX_METHOD)
        luaL_argerror(L, first, "method must be 1 to 16 characters");
    for (i = 0; i < r->method_len; i++) {
        if (!is_token_char((unsigned char)r->method[i]))
            luaL_argerror(L, first, "method must be an HTTP token");
    }
    r->url = lua_tolstring(L, first + 1, &r->url_len);
    if (r->url_len == 0 || strlen(r->url) != r->url_len)
        luaL_argerror(L, first + 1, "url must be a non-empty string without NUL");
    check_headers(L, first + 2, r);
    if (lua_isnoneornil(L, first + 3)) {
        r->body = NULL;
        r->body_len = 0;
    } else {
        luaL_checktype(L, first + 3, LUA_TSTRING);
        r->body = lua_tolstring(L, first + 3, &r->body_len);
    }
    r->timeout_ms = check_ms(L, first + 4);
    r->connect_timeout_ms = check_ms(L, first + 5);
}

/* ---- the easy handle ---- */

static size_t on_body(char *data, size_t size, size_t count, void *userdata)
{
    ao_http_transfer *t = userdata;
    size_t n = size * count;

    if (n > t->max_response_bytes - t->response.len) {
        t->too_large = 1;
        return 0;
    }
    if (ao_buffer_append(&t->response, data, n) != 0) {
        t->out_of_memory = 1;
        return 0;
    }
    return n;
}

static int ascii_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int has_prefix_nocase(const char *s, size_t len, const char *prefix)
{
    size_t i, n = strlen(prefix);

    if (len < n)
        return 0;
    for (i = 0; i < n; i++) {
        if (ascii_lower((unsigned char)s[i]) != prefix[i])
            return 0;
    }
    return 1;
}

/* Keeps a raw Retry-After value (the Lua side interprets it), trimmed. */
static void keep_retry_after(ao_http_transfer *t, const char *value, size_t len)
{
    size_t start = 0, end = len;

    while (start < end && (value[start] == ' ' || value[start] == '\t'))
        start++;
    while (end > start && (value[end - 1] == '\r' || value[end - 1] == '\n' ||
                           value[end - 1] == ' ' || value[end - 1] == '\t'))
        end--;
    /* A value this long is not a delay or an HTTP date: report none rather than a cut one. */
    if (end - start > AO_HTTP_MAX_RETRY_AFTER) {
        t->has_retry_after = 0;
        t->retry_after_len = 0;
        return;
    }
    memcpy(t->retry_after, value + start, end - start);
    t->retry_after_len = end - start;
    t->retry_after[t->retry_after_len] = '\0';
    t->has_retry_after = 1;
}

/* Where libcurl has no headers API: Retry-After of the final response, line by line. */
static size_t on_header(char *line, size_t size, size_t count, void *userdata)
{
    ao_http_transfer *t = userdata;
    size_t n = size * count;
    size_t name_len = sizeof "retry-after:" - 1;

    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx or a proxy's CONNECT): forget the previous one's header. */
        t->has_retry_after = 0;
        t->retry_after_len = 0;
        return n;
    }
    /* Most headers are dismissed on their first letter. */
    if (n == 0 || (line[0] != 'r' && line[0] != 'R') || !has_prefix_nocase(line, n, "retry-after:"))
        return n;
    keep_retry_after(t, line + name_len, n - name_len);
    return n;
}

#if LIBCURL_VERSION_NUM >= 0x075400
/*
 * libcurl 7.84+ keeps every response header anyway (unless built without the
 * headers API): reading Retry-After once a transfer is over spares a callback
 * per header line of every response, about 3k instructions a request.
 */
static int headers_api_built_in(CURL *easy)
{
    struct curl_header *h;

    return curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_NOT_BUILT_IN;
}

/* The last Retry-After of the final response (CURLH_HEADER: not a 1xx's, a CONNECT's or a trailer). */
static void read_retry_after(ao_http_transfer *t)
{
    struct curl_header *h;

    if (curl_easy_header(t->easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
        return;
    if (h->amount > 1 && curl_easy_header(t->easy, "Retry-After", h->amount - 1, CURLH_HEADER, -1, &h) != CURLHE_OK)
        return;
    keep_retry_after(t, h->value, strlen(h->value));
}
#else
static int headers_api_built_in(CURL *easy)
{
    (void)easy;
    return 0;
}

static void read_retry_after(ao_http_transfer *t)
{
    (void)t;
}
#endif

#if LIBCURL_VERSION_NUM >= 0x075500
static CURLcode limit_protocols(CURL *easy)
{
    CURLcode rc = curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");

    if (rc == CURLE_OK)
        rc = curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    return rc;
}
#else
static CURLcode limit_protocols(CURL *easy)
{
    CURLcode rc = curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));

    if (rc == CURLE_OK)
        rc = curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    return rc;
}
#endif

/*
 * The variables libcurl reads to pick a proxy (it ignores HTTP_PROXY on
 * purpose). Without one, an empty CURLOPT_PROXY means the same thing and spares
 * libcurl reading the environment again on every request; so the environment
 * counts as it is when the handle is made.
 */
static int proxy_in_environment(void)
{
    static const char *const names[] = {
        "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", NULL
    };
    const char *const *name;

    for (name = names; *name != NULL; name++) {
        const char *value = getenv(*name);

        if (value != NULL && value[0] != '\0')
            return 1;
    }
    return 0;
}

/*
 * The User-Agent goes out as a header line of our own, not CURLOPT_USERAGENT:
 * libcurl would print that option into a new line byte by byte before every
 * transfer, and then print the line into the request again. A tunnel's
 * CONNECT (an https URL through a proxy) does not get the request's headers,
 * so it gets the line through CURLOPT_PROXYHEADER (see set_url).
 */
#define USER_AGENT_NAME "User-Agent"
static const char user_agent_prefix[] = USER_AGENT_NAME ": ";

static CURLcode user_agent_lines(ao_http_transfer *t, const char *user_agent)
{
    size_t prefix_len = sizeof user_agent_prefix - 1, len = strlen(user_agent);

    t->user_agent_header = malloc(prefix_len + len + 1);
    if (t->user_agent_header == NULL)
        return CURLE_OUT_OF_MEMORY;
    memcpy(t->user_agent_header, user_agent_prefix, prefix_len);
    memcpy(t->user_agent_header + prefix_len, user_agent, len + 1);
    t->proxy_header_list = curl_slist_append(NULL, t->user_agent_header);
    return t->proxy_header_list != NULL ? CURLE_OK : CURLE_OUT_OF_MEMORY;
}

/* As libcurl tells a header of the caller's from its own: the name, then ':' or ';'. */
static int has_user_agent(const ao_http_request *r)
{
    size_t i, name_len = sizeof USER_AGENT_NAME - 1;

    for (i = 0; i < r->header_count; i++) {
        const char *h = r->headers[i].data;

        if (r->headers[i].len > name_len && curl_strnequal(h, USER_AGENT_NAME, name_len) &&
            (h[name_len] == ':' || h[name_len] == ';'))
            return 1;
    }
    return 0;
}

#define AO_SET(opt, value) \
    do { \
        if (rc == CURLE_OK) \
            rc = curl_easy_setopt(easy, (opt), (value)); \
    } while (0)

CURLcode ao_http_transfer_open(ao_http_transfer *t, const ao_http_options *o)
{
    CURL *easy;
    CURLcode rc = CURLE_OK;

    ao_buffer_init(&t->response);
    t->max_response_bytes = o->max_response_bytes;
    t->header_list = NULL;
    t->extra_headers = 0;
    t->user_agent_header = NULL;
    t->proxy_header_list = NULL;
    t->url = NULL;
    t->url_len = 0;
#ifdef AO_HTTP_URL_HANDLE
    t->url_handle = NULL;
#endif
    t->method[0] = '\0';
    t->body_mode = -1;
    t->timeout_ms = 0;
    t->connect_timeout_ms = 0;
    t->has_retry_after = 0;
    t->retry_after_len = 0;
    t->error[0] = '\0';
    t->easy = NULL;
    if (ao_http_global_init() != 0)
        return CURLE_FAILED_INIT;
    easy = curl_easy_init();
    if (easy == NULL)
        return CURLE_OUT_OF_MEMORY;

    AO_SET(CURLOPT_NOSIGNAL, 1L);
    AO_SET(CURLOPT_NOPROGRESS, 1L);
    AO_SET(CURLOPT_FOLLOWLOCATION, 0L);
    AO_SET(CURLOPT_TCP_KEEPALIVE, 1L);
    AO_SET(CURLOPT_SSL_VERIFYPEER, o->allow_insecure_tls ? 0L : 1L);
    AO_SET(CURLOPT_SSL_VERIFYHOST, o->allow_insecure_tls ? 0L : 2L);
    AO_SET(CURLOPT_ERRORBUFFER, t->error);
    AO_SET(CURLOPT_WRITEFUNCTION, on_body);
    AO_SET(CURLOPT_WRITEDATA, (void *)t);
    t->headers_api = headers_api_built_in(easy);
    if (!t->headers_api) {
        AO_SET(CURLOPT_HEADERFUNCTION, on_header);
        AO_SET(CURLOPT_HEADERDATA, (void *)t);
    }
    /* Refuses early when the server announces a larger Content-Length. */
    AO_SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_response_bytes);
    if (o->ca_file != NULL)
        AO_SET(CURLOPT_CAINFO, o->ca_file);
    if (o->proxy != NULL)
        AO_SET(CURLOPT_PROXY, o->proxy);
    else if (!proxy_in_environment())
        AO_SET(CURLOPT_PROXY, "");
    if (rc == CURLE_OK)
        rc = limit_protocols(easy);
    t->easy = easy;
    if (rc == CURLE_OK && o->user_agent != NULL)
        rc = user_agent_lines(t, o->user_agent);
    if (rc != CURLE_OK)
        ao_http_transfer_close(t);
    return rc;
}

/*
 * True when the cached list holds exactly these headers followed by the lines
 * set_headers adds (which depend on nothing else).
 */
static int same_headers(const ao_http_transfer *t, const ao_http_request *r)
{
    const struct curl_slist *list = t->header_list;
    size_t i, extra = 0;

    for (i = 0; i < r->header_count; i++, list = list->next) {
        if (list == NULL || strncmp(list->data, r->headers[i].data, r->headers[i].len) != 0 ||
            list->data[r->headers[i].len] != '\0')
            return 0;
    }
    for (; list != NULL; list = list->next)
        extra++;
    return extra == t->extra_headers;
}

static CURLcode set_headers(ao_http_transfer *t, const ao_http_request *r)
{
    struct curl_slist *list = NULL, *grown;
    size_t i, extra;
    CURLcode rc;

    if (t->header_list != NULL && same_headers(t, r))
        return CURLE_OK;
    for (i = 0; i < r->header_count; i++) {
        grown = curl_slist_append(list, r->headers[i].data);
        if (grown == NULL)
            goto out_of_memory;
        list = grown;
    }
    extra = 1;
    /* the caller's own User-Agent replaces ours */
    if (t->user_agent_header != NULL && !has_user_agent(r)) {
        grown = curl_slist_append(list, t->user_agent_header);
        if (grown == NULL)
            goto out_of_memory;
        list = grown;
        extra = 2;
    }
    /* An empty Expect stops libcurl from waiting for "100 Continue" before a large body. */
    grown = curl_slist_append(list, "Expect:");
    if (grown == NULL)
        goto out_of_memory;
    list = grown;
    rc = curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, list);
    if (rc != CURLE_OK) {
        curl_slist_free_all(list);
        return rc;
    }
    curl_slist_free_all(t->header_list);
    t->header_list = list;
    t->extra_headers = extra;
    return CURLE_OK;

out_of_memory:
    curl_slist_free_all(list);
    return CURLE_OUT_OF_MEMORY;
}

#ifdef AO_HTTP_URL_HANDLE
/*
 * libcurl parses a URL given as a string again for every transfer, and then
 * prints it back out byte by byte (about a sixth of what a kept-alive request
 * cost it). A URL handle (CURLOPT_CURLU) is parsed here, once per distinct
 * URL, and libcurl only copies it. A URL the handle refuses (or
 * no memory for one) goes to libcurl as a string alone, which then fails or
 * succeeds exactly as it always did.
 */
static CURLcode set_url_handle(ao_http_transfer *t, const char *url)
{
    CURLU *parsed = NULL;

    if (t->url_handle == NULL)
        t->url_handle = curl_url();
    /* the flags libcurl itself parses a string URL with */
    if (t->url_handle != NULL &&
        curl_url_set(t->url_handle, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK)
        parsed = t->url_handle;
    return curl_easy_setopt(t->easy, CURLOPT_CURLU, parsed);
}

/* Only once the easy handle no longer points at it. */
static void free_url_handle(ao_http_transfer *t)
{
    curl_url_cleanup(t->url_handle);
    t->url_handle = NULL;
}
#else
static CURLcode set_url_handle(ao_http_transfer *t, const char *url)
{
    (void)t;
    (void)url;
    return CURLE_OK;
}

static void free_url_handle(ao_http_transfer *t)
{
    (void)t;
}
#endif

/*
 * The string is set even with a URL handle: CURLINFO_EFFECTIVE_URL then stays
 * the request's. A repeated URL is left as it is.
 */
static CURLcode set_url(ao_http_transfer *t, const ao_http_request *r)
{
    CURLcode rc;
    char *copy;

    if (t->url != NULL && t->url_len == r->url_len && memcmp(t->url, r->url, r->url_len) == 0)
        return CURLE_OK;
    free(t->url);
    t->url = NULL;
    t->url_len = 0;
    rc = set_url_handle(t, r->url);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(t->easy, CURLOPT_URL, r->url);
    /* only a tunnel's CONNECT: a plain http request through a proxy gets the request's lines already */
    if (rc == CURLE_OK && t->proxy_header_list != NULL)
        rc = curl_easy_setopt(t->easy, CURLOPT_PROXYHEADER,
                              curl_strnequal(r->url, "https://", 8) ? t->proxy_header_list : NULL);
    if (rc != CURLE_OK)
        return rc;
    /* Without a copy the URL is simply set again next time. */
    copy = malloc(r->url_len + 1);
    if (copy != NULL) {
        memcpy(copy, r->url, r->url_len + 1);
        t->url = copy;
        t->url_len = r->url_len;
    }
    return CURLE_OK;
}

static CURLcode set_method(ao_http_transfer *t, const ao_http_request *r)
{
    CURL *easy = t->easy;
    CURLcode rc = CURLE_OK;
    int body_mode = r->body != NULL;

    if (t->body_mode == body_mode && strcmp(t->method, r->method) == 0)
        return CURLE_OK;
    if (strcmp(r->method, "HEAD") == 0 && !body_mode) {
        AO_SET(CURLOPT_NOBODY, 1L);
        AO_SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
    } else if (body_mode) {
        /* The body goes as POSTFIELDS; any other method name is sent instead of POST. */
        AO_SET(CURLOPT_NOBODY, 0L);
        AO_SET(CURLOPT_POST, 1L);
        AO_SET(CURLOPT_CUSTOMREQUEST, strcmp(r->method, "POST") == 0 ? NULL : r->method);
    } else {
        AO_SET(CURLOPT_NOBODY, 0L);
        AO_SET(CURLOPT_HTTPGET, 1L);
        AO_SET(CURLOPT_CUSTOMREQUEST, strcmp(r->method, "GET") == 0 ? NULL : r->method);
    }
    if (rc != CURLE_OK) {
        t->body_mode = -1;
        return rc;
    }
    memcpy(t->method, r->method, r->method_len + 1);
    t->body_mode = body_mode;
    return CURLE_OK;
}

CURLcode ao_http_transfer_prepare(ao_http_transfer *t, const ao_http_request *r)
{
    CURL *easy = t->easy;
    CURLcode rc;

    ao_buffer_reset(&t->response);
    t->has_retry_after = 0;
    t->retry_after_len = 0;
    t->too_large = 0;
    t->out_of_memory = 0;
    t->error[0] = '\0';

    rc = set_headers(t, r);
    if (rc == CURLE_OK)
        rc = set_method(t, r);
    if (rc == CURLE_OK)
        rc = set_url(t, r);
    if (r->body != NULL) {
        AO_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        AO_SET(CURLOPT_POSTFIELDS, r->body);
    }
    if (rc == CURLE_OK && t->timeout_ms != r->timeout_ms) {
        AO_SET(CURLOPT_TIMEOUT_MS, r->timeout_ms);
        t->timeout_ms = rc == CURLE_OK ? r->timeout_ms : 0;
    }
    if (rc == CURLE_OK && t->connect_timeout_ms != r->connect_timeout_ms) {
        AO_SET(CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
        t->connect_timeout_ms = rc == CURLE_OK ? r->connect_timeout_ms : 0;
    }
    return rc;
}

#undef AO_SET

void ao_http_transfer_close(ao_http_transfer *t)
{
    if (t->easy != NULL)
        curl_easy_cleanup(t->easy);
    t->easy = NULL;
    curl_slist_free_all(t->header_list);
    t->header_list = NULL;
    /* after the easy handle: it may point at these */
    free_url_handle(t);
    curl_slist_free_all(t->proxy_header_list);
    t->proxy_header_list = NULL;
    free(t->user_agent_header);
    t->user_agent_header = NULL;
    free(t->url);
    t->url = NULL;
    t->url_len = 0;
    ao_buffer_free(&t->response);
}

/* ---- outcomes ---- */

void ao_http_push_error(lua_State *L, const char *code, const char *message, int curl_code)
{
    lua_createtable(L, 0, 3);
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    lua_pushinteger(L, curl_code);
    lua_setfield(L, -2, "curl_code");
}

static void set_seconds(lua_State *L, CURL *easy, CURLINFO info, const char *field)
{
    curl_off_t us = 0;

    curl_easy_getinfo(easy, info, &us);
    lua_pushnumber(L, (lua_Number)us / 1e6);
    lua_setfield(L, -2, field);
}

static void push_response(lua_State *L, ao_http_transfer *t)
{
    CURL *easy = t->easy;
    long status = 0, connects = 0;
    char *content_type = NULL;
    int not_success;

    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &content_type);
    /* It means something only for a response that is not a success (RFC 9110, 10.2.3). */
    not_success = status < 200 || status > 299;
    if (t->headers_api && not_success)
        read_retry_after(t);

    lua_createtable(L, 0, 11);
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, t->response.len ? t->response.data : "", t->response.len);
    lua_setfield(L, -2, "body");
    if (content_type != NULL) {
        lua_pushstring(L, content_type);
        lua_setfield(L, -2, "content_type");
    }
    if (t->has_retry_after && not_success) {
        lua_pushlstring(L, t->retry_after, t->retry_after_len);
        lua_setfield(L, -2, "retry_after");
    }
    lua_pushinteger(L, (lua_Integer)connects);
    lua_setfield(L, -2, "new_connections");
    set_seconds(L, easy, CURLINFO_NAMELOOKUP_TIME_T, "time_namelookup");
    set_seconds(L, easy, CURLINFO_CONNECT_TIME_T, "time_connect");
    set_seconds(L, easy, CURLINFO_APPCONNECT_TIME_T, "time_appconnect");
    set_seconds(L, easy, CURLINFO_PRETRANSFER_TIME_T, "time_pretransfer");
    set_seconds(L, easy, CURLINFO_STARTTRANSFER_TIME_T, "time_starttransfer");
    set_seconds(L, easy, CURLINFO_TOTAL_TIME_T, "time_total");
}

int ao_http_push_outcome(lua_State *L, ao_http_transfer *t, CURLcode rc)
{
    int ok = rc == CURLE_OK;

    if (ok) {
        push_response(L, t);
    } else if (t->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        char message[96];

        snprintf(message, sizeof message, "response larger than %lu bytes",
                 (unsigned long)t->max_response_bytes);
        ao_http_push_error(L, "TOO_LARGE", message, (int)rc);
    } else if (t->out_of_memory) {
        ao_http_push_error(L, "OUT_OF_MEMORY", "out of memory for the response", (int)rc);
    } else {
        ao_http_push_error(L, ao_http_code_name(rc), t->error[0] ? t->error : curl_easy_strerror(rc), (int)rc);
    }
    if (t->response.cap > AO_HTTP_KEEP_BUFFER)
        ao_buffer_free(&t->response);
    return ok;
}
