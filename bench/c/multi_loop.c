/*
 * Benchmark anchor: the same PUT kept IN_FLIGHT times in flight (default 16)
 * through one libcurl multi handle, each easy handle re-added as soon as its
 * transfer finishes, in plain C (the response is counted and dropped).
 *
 *   cc -O2 -o multi_loop bench/c/multi_loop.c -lcurl
 *   multi_loop URL TOKEN BODY_FILE COUNT [IN_FLIGHT]     COUNT: "20000" requests, or "3s" seconds
 *
 * Prints one JSON line: {"anchor":"c_multi_loop","in_flight":..,"requests":..,"failed":..,"seconds":..,
 * "requests_per_second":..}. Exits 1 when any request failed (transport error or a status other than 2xx).
 */
#define _POSIX_C_SOURCE 200809L

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_IN_FLIGHT 1024

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

int main(int argc, char **argv)
{
    const char *url, *token;
    char *body, *auth;
    long body_len, count, in_flight = 16, started_n = 0, done = 0, failed = 0, i;
    double seconds, started, elapsed;
    struct curl_slist *headers = NULL;
    CURL *handles[MAX_IN_FLIGHT];
    CURLM *multi;
    int running = 1;

    if ((argc != 5 && argc != 6) || parse_amount(argv[4], &count, &seconds) != 0 ||
        (argc == 6 && ((in_flight = strtol(argv[5], NULL, 10)) < 1 || in_flight > MAX_IN_FLIGHT))) {
        fprintf(stderr, "usage: %s URL TOKEN BODY_FILE COUNT|SECONDSs [IN_FLIGHT]\n", argv[0]);
        return 2;
    }
    url = argv[1];
    token = argv[2];
    body = read_file(argv[3], &body_len);
    if (body == NULL) {
        fprintf(stderr, "cannot read %s\n", argv[3]);
        return 2;
    }
    auth = malloc(strlen(token) + sizeof "Authorization: Bearer ");
    if (auth == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    sprintf(auth, "Authorization: Bearer %s", token);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, auth);
    headers = curl_slist_append(headers, "Expect:");
    multi = curl_multi_init();
    if (headers == NULL || multi == NULL) {
        fprintf(stderr, "cannot set up libcurl\n");
        return 2;
    }
    for (i = 0; i < in_flight; i++) {
        CURL *easy = curl_easy_init();

        if (easy == NULL) {
            fprintf(stderr, "cannot set up libcurl\n");
            return 2;
        }
        curl_easy_setopt(easy, CURLOPT_URL, url);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, drop_body);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        handles[i] = easy;
    }

    started = now_seconds();
    for (i = 0; i < in_flight && (count == 0 || started_n < count); i++) {
        curl_multi_add_handle(multi, handles[i]);
        started_n++;
    }
    while (running > 0 || done < started_n) {
        CURLMsg *msg;
        int left;

        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            CURL *easy = msg->easy_handle;
            long status = 0;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status < 200 || status > 299)
                failed++;
            done++;
            curl_multi_remove_handle(multi, easy);
            if (count > 0 ? started_n < count : now_seconds() - started < seconds) {
                curl_multi_add_handle(multi, easy);
                started_n++;
                running++;
            }
        }
        if (done >= started_n)
            break;
        if (curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK)
            break;
    }
    elapsed = now_seconds() - started;
    printf("{\"anchor\":\"c_multi_loop\",\"in_flight\":%ld,\"requests\":%ld,\"failed\":%ld,\"seconds\":%.3f,"
           "\"requests_per_second\":%.1f}\n",
           in_flight, done, failed, elapsed, elapsed > 0 ? (double)done / elapsed : 0.0);

    for (i = 0; i < in_flight; i++)
        curl_easy_cleanup(handles[i]);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    curl_global_cleanup();
    free(auth);
    free(body);
    return failed > 0 || done < started_n ? 1 : 0;
}
