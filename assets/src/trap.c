/* trap: prints a line, then traps on purpose: `unreachable` in Wasm, SIGILL (ud2) natively. */
#include <stdio.h>

int main(void) {
    puts("about to trap");
    fflush(stdout);
    __builtin_trap();
}
