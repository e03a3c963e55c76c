/* cpu: CPU-bound; counts the primes below N (argv[1], default 200000) by trial division and prints the count. */
#include <stdio.h>
#include <stdlib.h>

static int is_prime(unsigned long n) {
    if (n < 2) return 0;
    if (n % 2 == 0) return n == 2;
    for (unsigned long d = 3; d * d <= n; d += 2)
        if (n % d == 0) return 0;
    return 1;
}

int main(int argc, char **argv) {
    unsigned long limit = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    unsigned long count = 0;
    for (unsigned long n = 0; n < limit; n++)
        count += is_prime(n);
    printf("primes below %lu: %lu\n", limit, count);
    return 0;
}
