/* pause: the infra process of a wasmlab pod. It holds the pod's namespaces (network, IPC, UTS, and PID with
 * shareProcessNamespace) by being alive, does nothing else, and ends on SIGTERM or SIGINT with status 0.
 * As PID 1 of a shared pid namespace it reaps the orphans the kernel hands it (SIGCHLD), as an init must.
 * Static, no allocation, no output unless asked: `pause -v` prints its name and version. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig) {
  (void)sig;
  stop = 1;
}

static void on_child(int sig) {
  int saved = errno;
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("wasmlab-pause 1\n");
    return 0;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL)) return 1;
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGCHLD, &sa, NULL)) return 2;
  /* Block the signals, then wait for them atomically: none can slip in between the check and the wait. */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGCHLD);
  sigprocmask(SIG_BLOCK, &block, &old);
  while (!stop) sigsuspend(&old);
  return 0;
}
