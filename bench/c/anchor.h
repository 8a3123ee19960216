/*
 * What the plain C benchmark anchors (easy_loop.c, multi_loop.c) share: the
 * COUNT|SECONDSs argument, the request every handle sends (body read from a
 * file, the contract's headers, the same timeouts), the clock and the JSON
 * line. Included by exactly one .c file per program, so everything is static.
 */
#ifndef CHOCO_BENCH_ANCHOR_H
#define CHOCO_BENCH_ANCHOR_H

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The PUT every handle sends; anchor_request_init fills it, anchor_request_free empties it. */
struct anchor_request {
    char *body;
    long body_len;
    char *auth;
    struct curl_slist *headers;
};

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t drop_body(char *data, size_t size, size_t count, void *userdata)
{
    (void)data;
    (void)userdata;
    return size * count;
}

static char *read_file(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (*len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        data = malloc((size_t)*len + 1);
        if (data != NULL && fread(data, 1, (size_t)*len, f) != (size_t)*len) {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    return data;
}

/* "20000" -> a count of requests; "3s" -> a duration in seconds. */
static int parse_amount(const char *arg, long *count, double *seconds)
{
    char *end;
    double n = strtod(arg, &end);

    if (end == arg || n <= 0)
        return -1;
    if (strcmp(end, "s") == 0) {
        *count = 0;
        *seconds = n;
        return 0;
    }
    if (*end != '\0' || n != (double)(long)n)
        return -1;
    *count = (long)n;
    *seconds = 0;
    return 0;
}

/* Reads the body, initialises libcurl and builds the headers. Returns 0, or
 * the exit status (2) after saying on stderr what failed. */
static int anchor_request_init(struct anchor_request *req, const char *token, const char *body_file)
{
    req->headers = NULL;
    req->auth = NULL;
    req->body = read_file(body_file, &req->body_len);
    if (req->body == NULL) {
        fprintf(stderr, "cannot read %s\n", body_file);
        return 2;
    }
    req->auth = malloc(strlen(token) + sizeof "Authorization: Bearer ");
    if (req->auth == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    sprintf(req->auth, "Authorization: Bearer %s", token);
    req->headers = curl_slist_append(req->headers, "Content-Type: application/json");
    req->headers = curl_slist_append(req->headers, "Accept: application/json");
    req->headers = curl_slist_append(req->headers, req->auth);
    req->headers = curl_slist_append(req->headers, "Expect:");
    if (req->headers == NULL) {
        fprintf(stderr, "cannot set up libcurl\n");
        return 2;
    }
    return 0;
}

/* Points an easy handle at url with the request; the response is dropped. */
static void anchor_request_set(CURL *easy, const char *url, const struct anchor_request *req)
{
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, drop_body);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
}

/* After every handle that used the request is cleaned up. */
static void anchor_request_free(struct anchor_request *req)
{
    curl_slist_free_all(req->headers);
    curl_global_cleanup();
    free(req->auth);
    free(req->body);
}

/* The JSON line bench/lib.lua reads; in_flight is left out when it is 0. */
static void anchor_print(const char *name, long in_flight, long done, long failed, double elapsed)
{
    printf("{\"anchor\":\"%s\",", name);
    if (in_flight > 0)
        printf("\"in_flight\":%ld,", in_flight);
    printf("\"requests\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"requests_per_second\":%.1f}\n",
           done, failed, elapsed, elapsed > 0 ? (double)done / elapsed : 0.0);
}

#endif
