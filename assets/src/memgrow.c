/*
 * memgrow: grows the heap by N MiB (argv[1], default 64) in 1 MiB steps, writing to every page
 * of each step so the memory is really used. Prints each step and the total; exit 1 if malloc fails.
 * The blocks are chained and read back at the end, so the compiler cannot elide the allocations.
 */
#include <stdio.h>
#include <stdlib.h>

#define MIB (1024 * 1024)
#define PAGE 4096

struct block {
    struct block *prev;
    unsigned char bytes[MIB - sizeof(struct block *)];
};

int main(int argc, char **argv) {
    long want = argc > 1 ? strtol(argv[1], NULL, 10) : 64;
    long got = 0;
    struct block *last = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (long i = 0; i < want; i++) {
        struct block *b = malloc(sizeof *b);
        if (!b) {
            printf("malloc failed after %ld MiB of %ld\n", got, want);
            return 1;
        }
        b->prev = last;
        for (size_t off = 0; off < sizeof b->bytes; off += PAGE)
            b->bytes[off] = (unsigned char)(i + 1);
        last = b;
        got++;
        printf("grew to %ld MiB\n", got);
    }
    unsigned long sum = 0;
    while (last) {
        struct block *prev = last->prev;
        for (size_t off = 0; off < sizeof last->bytes; off += PAGE)
            sum += last->bytes[off];
        free(last);
        last = prev;
    }
    printf("reached %ld MiB (checksum %lu)\n", got, sum);
    return 0;
}
