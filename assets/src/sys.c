/* sys: checks the clocks (realtime, monotonic) and getentropy; prints one line each, exit 1 on failure. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    int failed = 0;
    struct timespec rt, m1, m2;

    if (clock_gettime(CLOCK_REALTIME, &rt) == 0 && rt.tv_sec > 1500000000) {
        puts("clock_gettime(CLOCK_REALTIME): ok");
    } else {
        puts("clock_gettime(CLOCK_REALTIME): FAILED");
        failed = 1;
    }

    if (clock_gettime(CLOCK_MONOTONIC, &m1) == 0 && clock_gettime(CLOCK_MONOTONIC, &m2) == 0 &&
        (m2.tv_sec > m1.tv_sec || (m2.tv_sec == m1.tv_sec && m2.tv_nsec >= m1.tv_nsec))) {
        puts("clock_gettime(CLOCK_MONOTONIC): ok, does not go backwards");
    } else {
        puts("clock_gettime(CLOCK_MONOTONIC): FAILED");
        failed = 1;
    }

    unsigned char a[16], b[16];
    if (getentropy(a, sizeof a) == 0 && getentropy(b, sizeof b) == 0) {
        printf("getentropy: %zu bytes, two draws %s\n", sizeof a,
               memcmp(a, b, sizeof a) != 0 ? "differ" : "are EQUAL (suspicious)");
    } else {
        puts("getentropy: FAILED");
        failed = 1;
    }
    return failed;
}
