/* cwd: prints the working directory and the first line of a file opened by a relative path.
 * Usage: cwd [FILE]   (default rel.txt). Exit 0 when the file opens, 1 when it does not. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "rel.txt";
    char buf[256];
    printf("cwd=%s\n", getcwd(buf, sizeof buf) ? buf : "?");
    FILE *f = fopen(name, "r");
    if (!f) {
        printf("%s: cannot open\n", name);
        return 1;
    }
    char line[128];
    if (fgets(line, sizeof line, f))
        printf("%s: %s", name, line);
    fclose(f);
    return 0;
}
