/* hello: prints one greeting and exits 0. The smallest workload; the seed image runs it. */
#include <stdio.h>

int main(void) {
    puts("hello world from wasmlab !!!!");
    return 0;
}
