/*
** powercut.c — libpowercut.so, an LD_PRELOAD layer for tests only (never
** installed) that makes `pdrelay run` lose power: it records every write
** and sync to the files under one directory, and at a chosen operation
** puts those files in a state a power cut could have left them in, then
** kills the process at once (SIGKILL). The model is SQLite's own crash
** test (src/test6.c in SQLite's sources) and ALICE's: whatever was written
** to a file since its last successful fsync/fdatasync may be lost, and
** the device may have written any subset of it, sector by sector, in any
** order. tests/powercut/powercut_cycle.c drives it.
**
** WHY A SHIM. Debian 12 was searched (apt-cache search) for a tool that
** does this without root: fiu-utils/libfiu (an LD_PRELOAD fault injector:
** it makes calls fail with an errno, it does not drop unsynced writes),
** disorderfs (FUSE: shuffles directory order), fuse2fs, unionfs-fuse,
** fuse-overlayfs (FUSE file systems, no fault model). None models the loss
** of unsynced data; a FUSE file system would also need /dev/fuse and
** fusermount, which CI containers often lack. dm-log-writes and dm-flakey
** (device-mapper) need root, loop devices and the dm kernel module. LazyFS,
** CrashMonkey and ALICE are not packaged. So: this shim, about as big as
** the model needs, and runnable wherever the tests run.
**
** ENVIRONMENT
**   PDR_POWERCUT_DIR     only regular files under this directory are
**                        tracked (the daemon's data_dir); unset: nothing is
**   PDR_POWERCUT_AT      cut at the N-th tracked operation (1-based; a
**                        write, pwrite, writev, pwritev, ftruncate, fsync or
**                        fdatasync of a tracked file); 0 or unset: never
**   PDR_POWERCUT_SEED    seeds the RNG that picks the surviving sectors
**   PDR_POWERCUT_SECTOR  the sector size, default 512
** At a normal exit the shim logs "powercut: exit ops=N syncs: FILE=K ..."
** (the count of tracked operations, to calibrate PDR_POWERCUT_AT, and the
** syncs of each file); at the cut, one line
** "powercut: cut at op N ..." saying what it did. Both go to stderr.
**
** THE MODEL
**   - Write-through with undo: every tracked write goes to the file at
**     once, after its pre-image (the bytes it overwrites; none past the end
**     of the file) is appended to the file's list of unsynced changes. A
**     shrinking ftruncate is a change too (its pre-image is the cut-off
**     tail). A successful fsync or fdatasync of the file empties its list
**     and records its size as the synced size. A file is known by device and
**     inode, so every descriptor of it shares one list.
**   - The cut, at operation N, before that operation runs: for every file,
**     every sector some unsynced change touched either survives (keeps its
**     current content) or not (gets back its content as of the last sync:
**     the change records are walked newest to oldest, so the oldest
**     pre-image wins; bytes that did not exist then become zeros), by a
**     coin of the seeded RNG. A file grown since its sync is cut back to the
**     end of its last surviving sector past the synced size (or to the
**     synced size if none survived); a file shrunk since, by one coin, keeps
**     its current size or gets its synced size back. Then SIGKILL.
**   - One mutex serialises the shim: the cut blocks every other thread's
**     tracked call, so nothing is written between the cut and the kill.
**
** LIMITS OF THE MODEL (treated as durable, or not seen)
**   - Metadata: creating, renaming and unlinking files, directory fsyncs,
**     O_TRUNC at open. A file renamed with rename() keeps its unsynced
**     changes under its new name. A file seen for the first time is taken as synced
**     as it is.
**   - The -shm file is not tracked: SQLite rebuilds it from the WAL after a
**     crash. Writes through mmap and through stdio (FILE *) are not seen;
**     neither are fallocate and copy_file_range. pdrelay writes its data
**     directory with none of them.
**   - A write that failed is still recorded (its pre-image is restored or
**     kept, both are states the file had).
**   - 64-bit off_t only: the tests skip the shim in cross builds (32-bit
**     targets, and qemu-user), see tests/CMakeLists.txt.
*/
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- the real functions ------------------------------------------------------ */

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);

#define PC_RESOLVE(name) (real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name))

/* ---- state ----------------------------------------------------------------------- */

/* One unsynced change of a file: the range [off, off+len) was overwritten
** (a write) or cut off (a shrinking ftruncate); pre holds its first avail
** bytes as they were before (the rest did not exist then). */
typedef struct pc_change {
    off_t off;
    size_t len, avail;
    unsigned char *pre;
} pc_change;

typedef struct pc_file {
    dev_t dev;
    ino_t ino;
    char *path;          /* absolute, as first opened */
    off_t synced_size;
    pc_change *ch;       /* oldest first */
    size_t n, cap;
    int broken;          /* a pre-image could not be read: not undone */
    unsigned long syncs; /* successful fsync/fdatasync calls, for the exit line */
} pc_file;

#define PC_MAX_FDS 4096
static pthread_mutex_t pc_mu = PTHREAD_MUTEX_INITIALIZER;
static pc_file *pc_files;
static size_t pc_nfiles, pc_capfiles;
static int pc_fd_file[PC_MAX_FDS];   /* fd -> index in pc_files + 1; 0: untracked */
static char pc_dir[PATH_MAX + 2];    /* realpath of PDR_POWERCUT_DIR + "/"; "" = off */
static char pc_dir_lit[PATH_MAX + 2]; /* PDR_POWERCUT_DIR as given, + "/" */
static unsigned long pc_ops, pc_at;
static uint64_t pc_rng;
static size_t pc_sector = 512;

/* ---- helpers --------------------------------------------------------------------- */

static void pc_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void pc_say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    if (real_write) (void)!real_write(2, buf, (size_t)n);
}

/* splitmix64: small, seedable, good enough for coins. */
static uint64_t pc_rand(void)
{
    uint64_t z = (pc_rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned long pc_env_ul(const char *name, unsigned long dflt)
{
    const char *s = getenv(name);
    char *end;
    unsigned long v;
    if (!s || !*s) return dflt;
    errno = 0;
    v = strtoul(s, &end, 0);
    return errno || *end ? dflt : v;
}

static void pc_init_once(void)
{
    const char *dir = getenv("PDR_POWERCUT_DIR");
    char rp[PATH_MAX];
    PC_RESOLVE(open);
    PC_RESOLVE(open64);
    PC_RESOLVE(openat);
    PC_RESOLVE(openat64);
    PC_RESOLVE(close);
    PC_RESOLVE(write);
    PC_RESOLVE(pwrite);
    PC_RESOLVE(pwrite64);
    PC_RESOLVE(writev);
    PC_RESOLVE(pwritev);
    PC_RESOLVE(pwritev64);
    PC_RESOLVE(ftruncate);
    PC_RESOLVE(ftruncate64);
    PC_RESOLVE(fsync);
    PC_RESOLVE(fdatasync);
    PC_RESOLVE(rename);
    pc_at = pc_env_ul("PDR_POWERCUT_AT", 0);
    pc_rng = pc_env_ul("PDR_POWERCUT_SEED", 1);
    pc_sector = pc_env_ul("PDR_POWERCUT_SECTOR", 512);
    if (pc_sector == 0 || pc_sector > 65536) pc_sector = 512;
    if (dir && *dir && realpath(dir, rp)) snprintf(pc_dir, sizeof pc_dir, "%s/", rp);
    else if (dir && *dir == '/') snprintf(pc_dir, sizeof pc_dir, "%s/", dir);   /* not made yet */
    if (pc_dir[0]) snprintf(pc_dir_lit, sizeof pc_dir_lit, "%s/", dir);
}

/* Every entry point starts here: another library's constructor may write
** before this one's has run. */
static pthread_once_t pc_once = PTHREAD_ONCE_INIT;
#define PC_INIT() pthread_once(&pc_once, pc_init_once)

__attribute__((constructor)) static void pc_init(void)
{
    PC_INIT();
}

__attribute__((destructor)) static void pc_fini(void)
{
    char syncs[384] = "";
    size_t o = 0;
    if (!pc_dir[0]) return;
    for (size_t i = 0; i < pc_nfiles && o < sizeof syncs; i++) {
        const char *base = pc_files[i].path ? strrchr(pc_files[i].path, '/') : NULL;
        int n = snprintf(syncs + o, sizeof syncs - o, " %s=%lu", base ? base + 1 : "?", pc_files[i].syncs);
        if (n < 0) break;
        o += (size_t)n;
    }
    pc_say("powercut: exit ops=%lu syncs:%s", pc_ops, syncs);
}

/* The fast test, without pc_mu: is fd tracked? */
static int pc_tracked(int fd)
{
    PC_INIT();
    return fd >= 0 && fd < PC_MAX_FDS && __atomic_load_n(&pc_fd_file[fd], __ATOMIC_ACQUIRE) != 0;
}

/* The file of a tracked fd, with pc_mu held; NULL if untracked, or if fd
** is no longer the file it was opened as (closed by a call the shim does
** not see, and reused): then it is untracked from now on. */
static pc_file *pc_file_of(int fd)
{
    struct stat sb;
    pc_file *f;
    if (!pc_tracked(fd)) return NULL;
    f = &pc_files[pc_fd_file[fd] - 1];
    if (fstat(fd, &sb) != 0 || sb.st_dev != f->dev || sb.st_ino != f->ino) {
        __atomic_store_n(&pc_fd_file[fd], 0, __ATOMIC_RELEASE);
        return NULL;
    }
    return f;
}

/* After a successful open: is fd a regular file under pc_dir (not -shm)?
** created: the open made the file (an inode reused after an unlink starts
** afresh). Called with pc_mu held. */
static void pc_track(int fd, int created)
{
    char link[64], path[PATH_MAX];
    struct stat sb;
    ssize_t n;
    size_t i, len;
    if (!pc_dir[0] || fd < 0 || fd >= PC_MAX_FDS) return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = '\0';
    len = strlen(pc_dir);
    if (strncmp(path, pc_dir, len) != 0) return;
    if ((size_t)n > 4 && !strcmp(path + n - 4, "-shm")) return;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) return;
    for (i = 0; i < pc_nfiles; i++)
        if (pc_files[i].dev == sb.st_dev && pc_files[i].ino == sb.st_ino) break;
    if (i == pc_nfiles) {
        if (pc_nfiles == pc_capfiles) {
            size_t cap = pc_capfiles ? 2 * pc_capfiles : 16;
            pc_file *p = realloc(pc_files, cap * sizeof *p);
            if (!p) return;
            pc_files = p;
            pc_capfiles = cap;
        }
        memset(&pc_files[i], 0, sizeof pc_files[i]);
        pc_files[i].dev = sb.st_dev;
        pc_files[i].ino = sb.st_ino;
        pc_nfiles++;
        created = 1;
    }
    if (created) {   /* new, or a new file on a reused inode */
        pc_file *f = &pc_files[i];
        for (size_t k = 0; k < f->n; k++) free(f->ch[k].pre);
        f->n = 0;
        f->broken = 0;
        free(f->path);
        f->path = strdup(path);
        f->synced_size = sb.st_size;
    }
    __atomic_store_n(&pc_fd_file[fd], (int)i + 1, __ATOMIC_RELEASE);
}

/* Records the pre-image of [off, off+len) of f (read through fd). */
static void pc_record(pc_file *f, int fd, off_t off, size_t len)
{
    struct stat sb;
    pc_change c = {off, len, 0, NULL};
    if (len == 0 || f->broken) return;
    if (fstat(fd, &sb) != 0) {
        f->broken = 1;
        return;
    }
    if (off < sb.st_size) c.avail = (size_t)(sb.st_size - off) < len ? (size_t)(sb.st_size - off) : len;
    if (c.avail) {
        ssize_t got;
        c.pre = malloc(c.avail);
        if (!c.pre || (got = pread(fd, c.pre, c.avail, off)) < 0 || (size_t)got != c.avail) {
            free(c.pre);
            pc_say("powercut: cannot read the pre-image of %s: not undone", f->path);
            f->broken = 1;
            return;
        }
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        pc_change *p = realloc(f->ch, cap * sizeof *p);
        if (!p) {
            free(c.pre);
            f->broken = 1;
            return;
        }
        f->ch = p;
        f->cap = cap;
    }
    f->ch[f->n++] = c;
}

static int pc_cmp_off(const void *a, const void *b)
{
    off_t x = *(const off_t *)a, y = *(const off_t *)b;
    return x < y ? -1 : x > y;
}

/* The cut, for one file: see THE MODEL above. Counts into *kept, *reverted. */
static void pc_cut_file(pc_file *f, unsigned long *kept, unsigned long *reverted, unsigned long *truncated)
{
    struct stat sb;
    off_t *sec = NULL, cur, final;
    size_t nsec = 0, k;
    unsigned char *keep = NULL, *buf = NULL;
    int fd, shrink_kept;
    const off_t S = (off_t)pc_sector;

    if (!f->path || f->broken) return;
    fd = real_open(f->path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return;   /* unlinked since: metadata is durable */
    if (fstat(fd, &sb) != 0 || sb.st_dev != f->dev || sb.st_ino != f->ino) goto out;
    cur = sb.st_size;
    if (f->n == 0 && cur == f->synced_size) goto out;
    /* the dirty sectors, sorted, unique */
    for (size_t i = 0; i < f->n; i++) nsec += (size_t)((f->ch[i].off + (off_t)f->ch[i].len - 1) / S - f->ch[i].off / S + 1);
    sec = malloc((nsec + 1) * sizeof *sec);
    keep = malloc(nsec + 1);
    buf = malloc(pc_sector);
    if (!sec || !keep || !buf) goto out;
    nsec = 0;
    for (size_t i = 0; i < f->n; i++)
        for (off_t s = f->ch[i].off / S; s <= (f->ch[i].off + (off_t)f->ch[i].len - 1) / S; s++) sec[nsec++] = s;
    qsort(sec, nsec, sizeof *sec, pc_cmp_off);
    k = 0;
    for (size_t i = 0; i < nsec; i++)
        if (k == 0 || sec[k - 1] != sec[i]) sec[k++] = sec[i];
    nsec = k;
    /* the size: see THE MODEL */
    final = f->synced_size;
    shrink_kept = cur < f->synced_size && (pc_rand() & 1);
    for (size_t i = 0; i < nsec; i++) keep[i] = (unsigned char)(pc_rand() & 1);
    if (shrink_kept) {
        final = cur;
    } else if (cur < f->synced_size) {
        for (size_t i = 0; i < nsec; i++)
            if ((sec[i] + 1) * S > cur) keep[i] = 0;   /* the tail comes back whole */
    }
    for (size_t i = 0; i < nsec; i++)
        if (keep[i] && (sec[i] + 1) * S > final) {
            off_t end = (sec[i] + 1) * S < cur ? (sec[i] + 1) * S : cur;
            if (end > final) final = end;
        }
    /* each reverted sector: its current bytes, then the pre-images newest to oldest */
    for (size_t i = 0; i < nsec; i++) {
        off_t s0 = sec[i] * S, s1 = s0 + S;
        ssize_t got;
        if (keep[i]) {
            if (s0 < final) (*kept)++;
            continue;
        }
        if (s0 >= final) continue;   /* cut off anyway */
        memset(buf, 0, pc_sector);
        got = pread(fd, buf, pc_sector, s0);
        if (got < 0) got = 0;
        for (size_t j = f->n; j-- > 0;) {
            const pc_change *c = &f->ch[j];
            off_t a = c->off > s0 ? c->off : s0;
            off_t b = c->off + (off_t)c->len < s1 ? c->off + (off_t)c->len : s1;
            off_t have = c->off + (off_t)c->avail;
            if (a >= b) continue;
            for (off_t p = a; p < b; p++) buf[p - s0] = p < have ? c->pre[p - c->off] : 0;
        }
        if (real_pwrite(fd, buf, pc_sector, s0) != (ssize_t)pc_sector) pc_say("powercut: cannot revert a sector of %s", f->path);
        (*reverted)++;
    }
    if (final != cur || final % S) {
        /* whole-sector reverts may have written past final */
        (void)!real_ftruncate(fd, final);
        if (final != cur) (*truncated)++;
    }
out:
    free(sec);
    free(keep);
    free(buf);
    real_close(fd);
}

/* Counts one tracked operation; at PDR_POWERCUT_AT, the power goes. Called
** with pc_mu held; never returns then. */
static void pc_op(const char *what)
{
    unsigned long kept = 0, reverted = 0, truncated = 0, dirty = 0;
    if (++pc_ops != pc_at) return;
    for (size_t i = 0; i < pc_nfiles; i++) {
        if (pc_files[i].n) dirty++;
        pc_cut_file(&pc_files[i], &kept, &reverted, &truncated);
    }
    pc_say("powercut: cut at op %lu (%s): %lu of %zu files dirty, sectors kept %lu reverted %lu, files truncated %lu",
           pc_ops, what, dirty, pc_nfiles, kept, reverted, truncated);
    kill(getpid(), SIGKILL);
    for (;;) pause();
}

/* ---- open and close ------------------------------------------------------------ */

static int pc_mode_needed(int flags)
{
#ifdef O_TMPFILE
    if ((flags & O_TMPFILE) == O_TMPFILE) return 1;
#endif
    return (flags & O_CREAT) != 0;
}

/* Could path name a file under the directory? An absolute path outside it
** (as given or resolved) cannot, and is opened without the mutex: a slow
** open elsewhere (curl's CA bundle) does not wait for a sync. */
static int pc_maybe_ours(const char *path)
{
    size_t a = strlen(pc_dir), b = strlen(pc_dir_lit);
    if (!pc_dir[0]) return 0;
    if (!path || path[0] != '/') return 1;
    return !strncmp(path, pc_dir, a) || !strncmp(path, pc_dir_lit, b) || !strncmp(path, pc_dir, a - 1) ||
           !strncmp(path, pc_dir_lit, b - 1);
}

static int pc_open_common(int (*fn)(int, const char *, int, ...), int (*fnp)(const char *, int, ...), int dirfd,
                          const char *path, int flags, mode_t mode)
{
    int fd, existed = 1, err;
    struct stat sb;
    PC_INIT();
    if (!pc_maybe_ours(path)) return fnp ? fnp(path, flags, mode) : fn(dirfd, path, flags, mode);
    pthread_mutex_lock(&pc_mu);
    if (flags & O_CREAT) existed = fstatat(fnp ? AT_FDCWD : dirfd, path, &sb, 0) == 0;
    fd = fnp ? fnp(path, flags, mode) : fn(dirfd, path, flags, mode);
    err = errno;
    if (fd >= 0) pc_track(fd, !existed);
    pthread_mutex_unlock(&pc_mu);
    errno = err;
    return fd;
}

#define PC_MODE_ARG(flags, mode)                \
    do {                                        \
        if (pc_mode_needed(flags)) {            \
            va_list ap;                         \
            va_start(ap, flags);                \
            mode = (mode_t)va_arg(ap, int);     \
            va_end(ap);                         \
        }                                       \
    } while (0)

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    PC_MODE_ARG(flags, mode);
    return pc_open_common(NULL, real_open, AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    PC_MODE_ARG(flags, mode);
    return pc_open_common(NULL, real_open64, AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    PC_MODE_ARG(flags, mode);
    return pc_open_common(real_openat, NULL, dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    PC_MODE_ARG(flags, mode);
    return pc_open_common(real_openat64, NULL, dirfd, path, flags, mode);
}

int close(int fd)
{
    if (pc_tracked(fd)) {
        int rc, err;
        pthread_mutex_lock(&pc_mu);
        rc = real_close(fd);
        err = errno;
        __atomic_store_n(&pc_fd_file[fd], 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&pc_mu);
        errno = err;
        return rc;
    }
    return real_close(fd);
}

/* ---- writes ------------------------------------------------------------------------- */

/* The offset a write() or writev() at the file position goes to. */
static off_t pc_pos(int fd)
{
    struct stat sb;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &sb) == 0) return sb.st_size;
    return lseek(fd, 0, SEEK_CUR);
}

static size_t pc_iov_len(const struct iovec *iov, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) len += iov[i].iov_len;
    return len;
}

/* The body of every write: count, record, write; pc_mu held around it. */
#define PC_WRITE(fd, what, off_expr, len_expr, call)             \
    do {                                                         \
        pc_file *f_;                                             \
        ssize_t r_;                                              \
        int e_;                                                  \
        if (!pc_tracked(fd)) return call;                        \
        pthread_mutex_lock(&pc_mu);                              \
        f_ = pc_file_of(fd);                                     \
        if (f_) {                                                \
            off_t o_ = (off_expr);                               \
            pc_op(what);                                         \
            if (o_ >= 0) pc_record(f_, fd, o_, (len_expr));      \
        }                                                        \
        r_ = call;                                               \
        e_ = errno;                                              \
        pthread_mutex_unlock(&pc_mu);                            \
        errno = e_;                                              \
        return r_;                                               \
    } while (0)

ssize_t write(int fd, const void *buf, size_t len)
{
    PC_WRITE(fd, "write", pc_pos(fd), len, real_write(fd, buf, len));
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    PC_WRITE(fd, "pwrite", off, len, real_pwrite(fd, buf, len, off));
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    PC_WRITE(fd, "pwrite64", off, len, real_pwrite64(fd, buf, len, off));
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    PC_WRITE(fd, "writev", pc_pos(fd), pc_iov_len(iov, n), real_writev(fd, iov, n));
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    PC_WRITE(fd, "pwritev", off, pc_iov_len(iov, n), real_pwritev(fd, iov, n, off));
}

ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off)
{
    PC_WRITE(fd, "pwritev64", off, pc_iov_len(iov, n), real_pwritev64(fd, iov, n, off));
}

/* A shrink records the tail it cuts off; a growth needs no undo (the size
** rule of the cut covers it). */
static int pc_truncate(int fd, off_t len, int (*fn)(int, off_t), const char *what)
{
    pc_file *f;
    struct stat sb;
    int rc, err;
    if (!pc_tracked(fd)) return fn(fd, len);
    pthread_mutex_lock(&pc_mu);
    f = pc_file_of(fd);
    if (f) {
        pc_op(what);
        if (fstat(fd, &sb) == 0 && len < sb.st_size) pc_record(f, fd, len, (size_t)(sb.st_size - len));
    }
    rc = fn(fd, len);
    err = errno;
    pthread_mutex_unlock(&pc_mu);
    errno = err;
    return rc;
}

int ftruncate(int fd, off_t len)
{
    return pc_truncate(fd, len, real_ftruncate, "ftruncate");
}

int ftruncate64(int fd, off_t len)
{
    return pc_truncate(fd, len, real_ftruncate64, "ftruncate64");
}

/* ---- syncs -------------------------------------------------------------------------- */

static int pc_sync(int fd, int (*fn)(int), const char *what)
{
    pc_file *f;
    struct stat sb;
    int rc, err;
    if (!pc_tracked(fd)) return fn(fd);
    pthread_mutex_lock(&pc_mu);
    f = pc_file_of(fd);
    if (f) pc_op(what);
    rc = fn(fd);
    err = errno;
    if (f && rc == 0 && fstat(fd, &sb) == 0) {
        for (size_t i = 0; i < f->n; i++) free(f->ch[i].pre);
        f->n = 0;
        f->broken = 0;
        f->synced_size = sb.st_size;
        f->syncs++;
    }
    pthread_mutex_unlock(&pc_mu);
    errno = err;
    return rc;
}

/* rename(2) is durable (metadata, see LIMITS), but the file keeps its
** unsynced changes: the cut finds it under its new name. (An export
** writes FILE.tmp, then renames it: db/bundle.c.) renameat is not wrapped. */
int rename(const char *from, const char *to)
{
    struct stat sb;
    char rp[PATH_MAX];
    int rc, err;
    PC_INIT();
    pthread_mutex_lock(&pc_mu);
    rc = real_rename(from, to);
    err = errno;
    if (rc == 0 && pc_dir[0] && stat(to, &sb) == 0 && realpath(to, rp)) {
        for (size_t i = 0; i < pc_nfiles; i++) {
            char *p;
            if (pc_files[i].dev != sb.st_dev || pc_files[i].ino != sb.st_ino) continue;
            p = strdup(rp);
            if (!p) continue;
            free(pc_files[i].path);
            pc_files[i].path = p;
        }
    }
    pthread_mutex_unlock(&pc_mu);
    errno = err;
    return rc;
}

int fsync(int fd)
{
    return pc_sync(fd, real_fsync, "fsync");
}

int fdatasync(int fd)
{
    return pc_sync(fd, real_fdatasync, "fdatasync");
}
