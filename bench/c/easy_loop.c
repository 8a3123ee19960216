/*
 * Benchmark anchor: the same PUT sent in a loop over one reused libcurl easy
 * handle, in plain C: the floor of any libcurl client (the response is counted
 * and dropped, no Lua anywhere).
 *
 *   cc -O2 -o easy_loop bench/c/easy_loop.c -lcurl
 *   easy_loop URL TOKEN BODY_FILE COUNT      COUNT: "20000" requests, or "3s" seconds
 *
 * Prints one JSON line: {"anchor":"c_easy_loop","requests":..,"failed":..,"seconds":..,"requests_per_second":..}
 * Exits 1 when any request failed (transport error or a status other than 2xx).
 */
#define _POSIX_C_SOURCE 200809L

#include "anchor.h"

int main(int argc, char **argv)
{
    const char *url, *token;
    long count, done = 0, failed = 0, status;
    double seconds, started, elapsed;
    struct anchor_request req;
    CURL *easy;

    if (argc != 5 || parse_amount(argv[4], &count, &seconds) != 0) {
        fprintf(stderr, "usage: %s URL TOKEN BODY_FILE COUNT|SECONDSs\n", argv[0]);
        return 2;
    }
    url = argv[1];
    token = argv[2];
    if (anchor_request_init(&req, token, argv[3]) != 0)
        return 2;
    easy = curl_easy_init();
    if (easy == NULL) {
        fprintf(stderr, "cannot set up libcurl\n");
        return 2;
    }
    anchor_request_set(easy, url, &req);

    started = now_seconds();
    for (;;) {
        if (count > 0 ? done >= count : now_seconds() - started >= seconds)
            break;
        status = 0;
        if (curl_easy_perform(easy) != CURLE_OK ||
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
            status < 200 || status > 299)
            failed++;
        done++;
    }
    elapsed = now_seconds() - started;
    anchor_print("c_easy_loop", 0, done, failed, elapsed);

    curl_easy_cleanup(easy);
    anchor_request_free(&req);
    return failed > 0 ? 1 : 0;
}
