/*
 * files: works in DIR (argv[1], default /tmp, created if missing): makes DIR/wasmlab-files/,
 * writes two files, reads one back, lists the directory (sorted, with sizes), then removes it all.
 * The output names no absolute path, so it is the same wherever DIR is. Exit 1 on any failure.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *what, const char *name) {
    printf("FAILED: %s %s (errno %d)\n", what, name, errno);
    return 1;
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    size_t n = fwrite(text, 1, strlen(text), f);
    if (fclose(f) != 0 || n != strlen(text)) return -1;
    return (int)n;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char sub[4096], p1[4200], p2[4200];

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return fail("mkdir", "DIR");
    snprintf(sub, sizeof sub, "%s/wasmlab-files", dir);
    if (mkdir(sub, 0755) != 0 && errno != EEXIST) return fail("mkdir", "wasmlab-files");
    puts("mkdir wasmlab-files: ok");

    snprintf(p1, sizeof p1, "%s/greeting.txt", sub);
    snprintf(p2, sizeof p2, "%s/numbers.txt", sub);
    int n1 = write_file(p1, "hello from the files workload\n");
    if (n1 < 0) return fail("write", "greeting.txt");
    printf("wrote greeting.txt: %d bytes\n", n1);
    int n2 = write_file(p2, "1 2 3 4 5 6 7 8 9 10\n");
    if (n2 < 0) return fail("write", "numbers.txt");
    printf("wrote numbers.txt: %d bytes\n", n2);

    char buf[256] = {0};
    FILE *f = fopen(p1, "r");
    if (!f) return fail("open", "greeting.txt");
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    printf("read greeting.txt: %zu bytes: %s", got, buf);

    DIR *d = opendir(sub);
    if (!d) return fail("opendir", "wasmlab-files");
    char *names[64];
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && count < 64) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        names[count++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof names[0], cmp);
    printf("listing wasmlab-files: %d entries\n", count);
    for (int i = 0; i < count; i++) {
        char p[4400];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", sub, names[i]);
        if (stat(p, &st) != 0) return fail("stat", names[i]);
        printf("  %s %lld\n", names[i], (long long)st.st_size);
        if (unlink(p) != 0) return fail("unlink", names[i]);
        free(names[i]);
    }
    if (rmdir(sub) != 0) return fail("rmdir", "wasmlab-files");
    puts("cleaned up: ok");
    return 0;
}
