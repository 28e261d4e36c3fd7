/*
 * scalems-forker: starts a spawner's programs with posix_spawn (src/runtime/executable/spawner-program.ts, "The
 * forker"). Node's spawn forks the spawner, copying a Node process's page tables, and holds its one thread until the
 * child has exec'd; glibc's posix_spawn clones with CLONE_VM | CLONE_VFORK and copies none. This program keeps no
 * state but its running children: the spawner decides what starts when, and ends the trees.
 *
 * Input (stdin, from the spawner): one record per program, each field ended by a NUL byte:
 *   id, working directory, stdout file, stderr file, stdin file ("" for /dev/null),
 *   the length in bytes of a text to write to its stdin ("-" for none), then that text (which may hold NUL bytes),
 *   argc, argv[0] ... argv[argc - 1], envc, envc changes to this process's environment ("NAME=value" sets, "NAME"
 *   removes)
 * Output (stdout, to the spawner), one line each, the first "R" (it runs):
 *   P <id> <pid> <start>                    started; <start>: field 22 of /proc/<pid>/stat, "-" if unread
 *   F <id> <stage> <errno name> <message>   not started; <stage>: stdout, stderr, stdin or spawn
 *   X <id> <wait status> <group alive 0|1>  exited, reaped
 * The program leads a session of its own, its signals at their defaults and none blocked, its stdout and stderr the
 * files (made, or emptied), argv[0] looked up on the PATH of its own environment when it holds no '/' (relative PATH
 * entries and program paths from its working directory), a file that is no program run by /bin/sh, as Node's spawn
 * (libuv) does. At the end of its input, this process exits: the programs it started go on (their owner ends them).
 * SIGINT, SIGHUP and SIGTERM are ignored: the spawner's owner acts on those.
 *
 * Built when scalems is installed (native/build.cjs): Linux with glibc >= 2.26 (POSIX_SPAWN_SETSID) or musl; where it
 * is not built, the spawner forks with Node.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char **base;  /* this process's environment as it started */
static size_t based; /* how many variables it holds */
static int home;     /* this process's working directory, to come back to */

/* the running children: pid -> id */
static struct running {
  pid_t pid;
  char *id;
} *running;
static size_t nrunning, caprunning;

/* texts being written to programs' stdin (through a pipe each, as the pipe takes them) */
static struct feed {
  int fd;
  char *text;
  size_t len, at;
} *feeds;
static size_t nfeeds, capfeeds;

/* what goes to the spawner, written once all that is at hand has been read */
static char *out;
static size_t nout, capout;

static void *grow(void *p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return p;
  size_t c = *cap == 0 ? 64 : *cap;
  while (c < need) c *= 2;
  void *q = realloc(p, c * size);
  if (q == NULL) {
    fputs("scalems-forker: out of memory\n", stderr);
    exit(70);
  }
  *cap = c;
  return q;
}

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + nout, capout - nout, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < capout - nout) {
      nout += (size_t)n;
      return;
    }
    out = grow(out, &capout, nout + (size_t)(n < 0 ? 256 : n + 1), 1);
  }
}

static void flush(void) {
  size_t at = 0;
  while (at < nout) {
    ssize_t w = write(1, out + at, nout - at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) exit(0); /* the spawner is gone */
    at += (size_t)w;
  }
  nout = 0;
}

static const char *errname(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case ENOEXEC: return "ENOEXEC";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case E2BIG: return "E2BIG";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case EPERM: return "EPERM";
    case EROFS: return "EROFS";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case ETXTBSY: return "ETXTBSY";
    case EIO: return "EIO";
    case EINVAL: return "EINVAL";
    default: return "EUNKNOWN";
  }
}

static void failed(const char *id, const char *stage, int e) {
  emit("F %s %s %s %s\n", id, stage, errname(e), strerror(e));
}

/* field 22 of /proc/<pid>/stat, the start time, into buf; "-" if it cannot be read */
static void start_of(pid_t pid, char *buf, size_t size) {
  char path[64], text[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  snprintf(buf, size, "-");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return;
  text[n] = 0;
  char *p = strrchr(text, ')'); /* the command may hold spaces and parentheses */
  if (p == NULL) return;
  p += 2; /* the state, field 3 */
  for (int field = 3; field < 22 && p != NULL; field++) {
    p = strchr(p, ' ');
    if (p != NULL) p++;
  }
  if (p == NULL) return;
  size_t len = strcspn(p, " ");
  if (len == 0 || len >= size) return;
  memcpy(buf, p, len);
  buf[len] = 0;
}

/* envp: the base environment with `n` changes; a new array of pointers (into `base` and the record) */
static char **environment(char **changes, size_t n) {
  static char **envp;
  static size_t cap;
  envp = grow(envp, &cap, based + n + 1, sizeof *envp);
  size_t count = based;
  memcpy(envp, base, based * sizeof *envp);
  for (size_t i = 0; i < n; i++) {
    const char *c = changes[i];
    const char *eq = strchr(c, '=');
    size_t key = eq != NULL ? (size_t)(eq - c) : strlen(c);
    size_t j = 0;
    while (j < count && !(strncmp(envp[j], c, key) == 0 && envp[j][key] == '=')) j++;
    if (eq != NULL) {
      envp[j] = (char *)c;
      if (j == count) count++;
    } else if (j < count) {
      envp[j] = envp[--count];
    }
  }
  envp[count] = NULL;
  return envp;
}

/* where execvp would find `file` on `path` (regular, executable), into buf; 0 if nowhere */
static int lookup(const char *file, const char *path, char *buf, size_t size) {
  if (strchr(file, '/') != NULL) return snprintf(buf, size, "%s", file) < (int)size;
  for (const char *p = path;; p++) {
    const char *end = strchrnul(p, ':');
    int n = end == p ? snprintf(buf, size, "%s", file) : snprintf(buf, size, "%.*s/%s", (int)(end - p), p, file);
    struct stat st;
    if (n > 0 && n < (int)size && stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0) return 1;
    if (*end == 0) return 0;
    p = end;
  }
}

static void start(char **f, size_t argc, char **changes, size_t envc, const char *text, size_t len,
                  posix_spawnattr_t *attr) {
  const char *id = f[0], *cwd = f[1];
  char **argv = f + 6;
  int fds[3] = {-1, -1, -1};
  int feed = -1; /* the pipe's end this process writes the text to */
  const char *stages[3] = {"stdin", "stdout", "stderr"};
  const char *paths[3] = {f[4][0] != 0 ? f[4] : "/dev/null", f[2], f[3]};
  int flags[3] = {O_RDONLY, O_WRONLY | O_CREAT | O_TRUNC, O_WRONLY | O_CREAT | O_TRUNC};
  if (argc == 0) {
    failed(id, "spawn", EINVAL);
    return;
  }
  /* stdout and stderr first, as the spawner made them; stdin a pipe if there is a text for it */
  for (int k = 1; k <= 3; k++) {
    int i = k % 3;
    if (i == 0 && text != NULL) {
      int ends[2];
      if (pipe2(ends, O_CLOEXEC) == 0) {
        fds[0] = ends[0];
        feed = ends[1];
      }
    } else {
      fds[i] = open(paths[i], flags[i] | O_CLOEXEC, 0644);
    }
    if (fds[i] < 0) {
      int e = errno;
      for (int j = 0; j < 3; j++)
        if (fds[j] >= 0) close(fds[j]);
      failed(id, stages[i], e);
      return;
    }
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  for (int i = 0; i < 3; i++) posix_spawn_file_actions_adddup2(&fa, fds[i], i);
  char **envp = environment(changes, envc);
  /* posix_spawnp looks argv[0] up on the PATH of this process's environment, read in the child, which shares this
     process's memory until it execs: the program's own environment is this process's for that moment */
  char **saved = environ;
  environ = envp;
  pid_t pid = 0;
  int rc = chdir(cwd) == 0 ? 0 : errno;
  if (rc == 0) rc = posix_spawnp(&pid, argv[0], &fa, attr, argv, envp);
  if (rc == ENOEXEC) {
    /* a file without #! or a format the kernel knows: /bin/sh runs it, as execvp does */
    const char *path = getenv("PATH");
    static char found[4096];
    if (lookup(argv[0], path != NULL ? path : "/usr/bin:/bin", found, sizeof found)) {
      char **sh = malloc((argc + 2) * sizeof *sh);
      if (sh != NULL) {
        sh[0] = "/bin/sh";
        sh[1] = found;
        memcpy(sh + 2, argv + 1, argc * sizeof *sh); /* argv[1..argc-1] and the NULL after them */
        rc = posix_spawn(&pid, "/bin/sh", &fa, attr, sh, envp);
        free(sh);
      }
    }
  }
  environ = saved;
  if (fchdir(home) != 0) {
    fputs("scalems-forker: cannot return to its working directory\n", stderr);
    exit(70);
  }
  posix_spawn_file_actions_destroy(&fa);
  for (int i = 0; i < 3; i++) close(fds[i]);
  if (rc != 0) {
    if (feed >= 0) close(feed);
    failed(id, "spawn", rc);
    return;
  }
  if (feed >= 0) {
    /* written as the pipe takes it (main), never blocking this process; what the program does not read is dropped */
    char *copy = len > 0 ? malloc(len) : NULL;
    if (len > 0 && copy == NULL) {
      fputs("scalems-forker: out of memory\n", stderr);
      exit(70);
    }
    if (len > 0) memcpy(copy, text, len);
    fcntl(feed, F_SETFL, O_NONBLOCK);
    feeds = grow(feeds, &capfeeds, nfeeds + 1, sizeof *feeds);
    feeds[nfeeds++] = (struct feed){feed, copy, len, 0};
  }
  running = grow(running, &caprunning, nrunning + 1, sizeof *running);
  running[nrunning].pid = pid;
  running[nrunning].id = strdup(id);
  nrunning++;
  char begun[32];
  start_of(pid, begun, sizeof begun);
  emit("P %s %d %s\n", id, (int)pid, begun);
}

/* writes what each pipe takes now; ends a feed once written, or once its program closed the pipe (EPIPE) */
static void feed_all(void) {
  for (size_t i = 0; i < nfeeds;) {
    struct feed *d = &feeds[i];
    while (d->at < d->len) {
      ssize_t w = write(d->fd, d->text + d->at, d->len - d->at);
      if (w > 0) d->at += (size_t)w;
      else if (w < 0 && errno == EINTR) continue;
      else break;
    }
    if (d->at < d->len && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      i++;
      continue;
    }
    close(d->fd);
    free(d->text);
    feeds[i] = feeds[--nfeeds];
  }
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (size_t i = 0; i < nrunning; i++) {
      if (running[i].pid != pid) continue;
      int alive = kill(-pid, 0) == 0 || errno == EPERM;
      emit("X %s %d %d\n", running[i].id, status, alive);
      free(running[i].id);
      running[i] = running[--nrunning];
      break;
    }
  }
}

/* the next NUL-ended field of [*at, end), or NULL if the record is not whole yet */
static char *field(char **at, char *end) {
  char *nul = memchr(*at, 0, (size_t)(end - *at));
  if (nul == NULL) return NULL;
  char *f = *at;
  *at = nul + 1;
  return f;
}

/* parses and starts one record of [buf, end); returns its length, or 0 if it is not whole yet */
static size_t record(char *buf, char *end, posix_spawnattr_t *attr) {
  static char **f;
  static size_t cap;
  char *at = buf;
  f = grow(f, &cap, 7, sizeof *f);
  for (int i = 0; i < 5; i++)
    if ((f[i] = field(&at, end)) == NULL) return 0;
  /* the text for stdin: its length, then as many bytes and a NUL */
  char *length = field(&at, end);
  if (length == NULL) return 0;
  char *text = NULL;
  size_t len = 0;
  if (strcmp(length, "-") != 0) {
    len = strtoul(length, NULL, 10);
    if ((size_t)(end - at) < len + 1) return 0;
    text = at;
    at += len + 1;
  }
  if ((f[5] = field(&at, end)) == NULL) return 0;
  size_t argc = strtoul(f[5], NULL, 10);
  f = grow(f, &cap, 6 + argc + 2, sizeof *f);
  for (size_t i = 0; i < argc; i++)
    if ((f[6 + i] = field(&at, end)) == NULL) return 0;
  f[6 + argc] = NULL;
  char *count = field(&at, end);
  if (count == NULL) return 0;
  size_t envc = strtoul(count, NULL, 10);
  f = grow(f, &cap, 6 + argc + 1 + envc + 1, sizeof *f);
  char **changes = f + 6 + argc + 1;
  for (size_t i = 0; i < envc; i++)
    if ((changes[i] = field(&at, end)) == NULL) return 0;
  start(f, argc, changes, envc, text, len, attr);
  return (size_t)(at - buf);
}

int main(void) {
  for (based = 0; environ[based] != NULL; based++) {
  }
  base = malloc((based + 1) * sizeof *base);
  if (base == NULL) return 70;
  memcpy(base, environ, (based + 1) * sizeof *base);
  home = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (home < 0) return 70;
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) return 70;
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
#ifdef __GLIBC__
  /* glibc's sigfillset leaves out its own two signals (32 and 33, which its threads use), and posix_spawn then sets them
     ignored in the child, which keeps that across exec: put them in the set by hand, as Node's spawn resets them too */
  for (int sig = 32; sig <= 33; sig++) {
    const size_t bits = 8 * sizeof all.__val[0];
    all.__val[(sig - 1) / bits] |= 1UL << ((sig - 1) % bits);
  }
#endif
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  emit("R\n"); /* it runs here: until this line, the spawner takes its end for a binary that cannot run here */
  flush();
  char *buf = NULL;
  size_t cap = 0, have = 0;
  struct pollfd *p = NULL;
  size_t capp = 0;
  for (;;) {
    p = grow(p, &capp, 2 + nfeeds, sizeof *p);
    p[0] = (struct pollfd){0, POLLIN, 0};
    p[1] = (struct pollfd){sfd, POLLIN, 0};
    for (size_t i = 0; i < nfeeds; i++) p[2 + i] = (struct pollfd){feeds[i].fd, POLLOUT, 0};
    if (poll(p, 2 + nfeeds, -1) < 0) {
      if (errno == EINTR) continue;
      return 70;
    }
    if (nfeeds > 0) feed_all();
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      reap();
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      buf = grow(buf, &cap, have + 65536, 1);
      ssize_t r = read(0, buf + have, cap - have);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break; /* the spawner is gone, or done */
      have += (size_t)r;
      size_t used = 0, n;
      while ((n = record(buf + used, buf + have, &attr)) > 0) used += n;
      have -= used;
      memmove(buf, buf + used, have);
    }
    flush();
  }
  flush();
  return 0;
}
