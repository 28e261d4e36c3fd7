/*
 * A diagnosis for docs/processes.md, not part of scalems: a forker that starts programs with posix_spawn (glibc's
 * clone(CLONE_VM | CLONE_VFORK): no page tables copied, unlike Node's fork) and makes each program's files as an
 * attempt's are made (the task's and the attempt's directories, stdout and stderr, a session of its own). It reads
 * lines "id<TAB>task directory<TAB>argv0[<TAB>arg...]" on stdin and answers "P id pid" once started, "X id status"
 * once exited; at the end of its input it waits for its programs and answers "R user_us system_us", its own CPU.
 * Built and run by native-spawn.ts (Linux, glibc >= 2.29).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
enum { PATHS = 4096, FIELDS = 64 };
static long ids[1 << 22]; /* pid -> id (pid_max is at most 2^22) */

static void start(char *line, posix_spawnattr_t *attr) {
  char *f[FIELDS + 1];
  int n = 0;
  for (char *t = line; n < FIELDS;) {
    f[n++] = t;
    char *tab = strchr(t, '\t');
    if (tab == NULL) break;
    *tab = 0;
    t = tab + 1;
  }
  if (n < 3) return;
  f[n] = NULL;
  long id = atol(f[0]);
  char cwd[PATHS - 16], out[PATHS], err[PATHS];
  mkdir(f[1], 0755);
  snprintf(cwd, sizeof cwd, "%s/attempt-1", f[1]);
  mkdir(cwd, 0755);
  snprintf(out, PATHS, "%s/stdout", cwd);
  snprintf(err, PATHS, "%s/stderr", cwd);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addchdir_np(&fa, cwd);
  pid_t pid;
  int rc = posix_spawnp(&pid, f[2], &fa, attr, f + 2, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    printf("X %ld %d\n", id, 127 << 8);
    return;
  }
  ids[pid] = id;
  printf("P %ld %d\n", id, pid);
}

static void reap(int block) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) printf("X %ld %d\n", ids[pid], status);
}

int main(void) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  static char buf[1 << 16];
  size_t have = 0;
  struct pollfd p[2] = {{0, POLLIN, 0}, {sfd, POLLIN, 0}};
  for (;;) {
    if (poll(p, 2, -1) < 0) continue;
    if (p[0].revents & (POLLIN | POLLHUP)) {
      ssize_t r = read(0, buf + have, sizeof buf - have);
      if (r <= 0) break;
      have += (size_t)r;
      char *s = buf, *nl;
      while ((nl = memchr(s, '\n', (size_t)(buf + have - s))) != NULL) {
        *nl = 0;
        start(s, &attr);
        s = nl + 1;
      }
      have = (size_t)(buf + have - s);
      memmove(buf, s, have);
    }
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      reap(0);
    }
    fflush(stdout);
  }
  reap(1);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("R %ld %ld\n", ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec,
         ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec);
  fflush(stdout);
  return 0;
}
