/*
 * loop: long-running. Prints "tick N" every INTERVAL ms (argv[2], default 1000) forever,
 * or COUNT times (argv[1], default 0 = forever) and then "done". Output is line-buffered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    long count = argc > 1 ? strtol(argv[1], NULL, 10) : 0;
    long interval_ms = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
    struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (long i = 1; count == 0 || i <= count; i++) {
        printf("tick %ld\n", i);
        nanosleep(&ts, NULL);
    }
    puts("done");
    return 0;
}
