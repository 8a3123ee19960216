/*
 * Benchmark anchor: PUTs kept IN_FLIGHT at a time in flight (default 16)
 * through one libcurl multi handle, each easy handle re-added as soon as its
 * transfer finishes, in plain C (the response is counted and dropped).
 * BODY_FILE holds one body, or one body per line: requests then take the
 * lines in turn, so that the gateway sees the same orders as from the batch
 * being compared (the emulator's work per request depends on the order).
 *
 *   cc -O2 -o multi_loop bench/c/multi_loop.c -lcurl
 *   multi_loop URL TOKEN BODY_FILE COUNT [IN_FLIGHT]     COUNT: "20000" requests, or "3s" seconds
 *
 * Prints one JSON line: {"anchor":"c_multi_loop","in_flight":..,"requests":..,"failed":..,"seconds":..,
 * "requests_per_second":..}. Exits 1 when any request failed (transport error or a status other than 2xx).
 */
#define _POSIX_C_SOURCE 200809L

#include "anchor.h"

#define MAX_IN_FLIGHT 1024

/* The lines of the body file, in place: start[i], len[i] is line i without its newline. */
struct body_lines {
    char **start;
    long *len;
    long count;
};

static int split_lines(char *text, long text_len, struct body_lines *lines)
{
    long i, n = 0;
    char *line = text;

    for (i = 0; i < text_len; i++)
        n += text[i] == '\n';
    n += text_len > 0 && text[text_len - 1] != '\n';
    lines->count = 0;
    lines->start = malloc((size_t)(n > 0 ? n : 1) * sizeof *lines->start);
    lines->len = malloc((size_t)(n > 0 ? n : 1) * sizeof *lines->len);
    if (lines->start == NULL || lines->len == NULL)
        return -1;
    for (i = 0; i <= text_len; i++) {
        if (i == text_len || text[i] == '\n') {
            if (text + i > line) {
                lines->start[lines->count] = line;
                lines->len[lines->count] = (long)(text + i - line);
                lines->count++;
            }
            line = text + i + 1;
        }
    }
    return lines->count > 0 ? 0 : -1;
}

/* Request number n takes line n of the body file (round and round). */
static void set_body(CURL *easy, const struct body_lines *lines, long n)
{
    long i = n % lines->count;

    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)lines->len[i]);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, lines->start[i]);
}

int main(int argc, char **argv)
{
    const char *url, *token;
    long count, in_flight = 16, started_n = 0, done = 0, failed = 0, i;
    double seconds, started, elapsed;
    struct anchor_request req;
    struct body_lines lines;
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
    if (anchor_request_init(&req, token, argv[3]) != 0)
        return 2;
    if (split_lines(req.body, req.body_len, &lines) != 0) {
        fprintf(stderr, "no body in %s\n", argv[3]);
        return 2;
    }
    multi = curl_multi_init();
    if (multi == NULL) {
        fprintf(stderr, "cannot set up libcurl\n");
        return 2;
    }
    for (i = 0; i < in_flight; i++) {
        CURL *easy = curl_easy_init();

        if (easy == NULL) {
            fprintf(stderr, "cannot set up libcurl\n");
            return 2;
        }
        anchor_request_set(easy, url, &req);
        handles[i] = easy;
    }

    started = now_seconds();
    for (i = 0; i < in_flight && (count == 0 || started_n < count); i++) {
        set_body(handles[i], &lines, started_n);
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
                set_body(easy, &lines, started_n);
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
    anchor_print("c_multi_loop", in_flight, done, failed, elapsed);

    for (i = 0; i < in_flight; i++)
        curl_easy_cleanup(handles[i]);
    curl_multi_cleanup(multi);
    anchor_request_free(&req);
    free(lines.start);
    free(lines.len);
    return failed > 0 || done < started_n ? 1 : 0;
}
