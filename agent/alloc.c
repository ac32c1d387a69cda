/*
** alloc.c — pdrelay's allocator: libc's, with a countdown that tests use to
** make the Nth allocation (and every later one) fail. See agent/pdr.h.
*/
#include "pdr.h"

#include <curl/curl.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Allocations left before failing; -1: never fail. */
static atomic_long alloc_left = -1;
static atomic_long alloc_failed;

/* 1 when this allocation must fail. */
static int alloc_fails(void)
{
    long left = atomic_load_explicit(&alloc_left, memory_order_relaxed);
    while (left >= 0) {
        if (left == 0) {
            atomic_fetch_add_explicit(&alloc_failed, 1, memory_order_relaxed);
            return 1;
        }
        if (atomic_compare_exchange_weak_explicit(&alloc_left, &left, left - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 0;
    }
    return 0;
}

void *pdr_malloc(size_t n)
{
    return alloc_fails() ? NULL : malloc(n);
}

void *pdr_calloc(size_t n, size_t size)
{
    return alloc_fails() ? NULL : calloc(n, size);
}

void *pdr_realloc(void *p, size_t n)
{
    return alloc_fails() ? NULL : realloc(p, n);
}

char *pdr_strdup(const char *s)
{
    return alloc_fails() ? NULL : strdup(s);
}

void pdr_free(void *p)
{
    free(p);
}

void pdr_alloc_fail_after(long n)
{
    atomic_store(&alloc_failed, 0);
    atomic_store(&alloc_left, n < 0 ? -1 : n);
}

long pdr_alloc_failures(void)
{
    return atomic_load(&alloc_failed);
}

/* ---- SQLite and libcurl ------------------------------------------------- */

static sqlite3_mem_methods sqlite_default;

static void *sqlite_malloc(int n)
{
    return alloc_fails() ? NULL : sqlite_default.xMalloc(n);
}

static void *sqlite_realloc(void *p, int n)
{
    return alloc_fails() ? NULL : sqlite_default.xRealloc(p, n);
}

pdr_rc pdr_alloc_hook_libraries(void)
{
    sqlite3_mem_methods m;
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_default) != SQLITE_OK) return PDR_ERR_INTERNAL;
    m = sqlite_default;
    m.xMalloc = sqlite_malloc;
    m.xRealloc = sqlite_realloc;
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK) return PDR_ERR_INTERNAL;
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, pdr_malloc, free, pdr_realloc, pdr_strdup, pdr_calloc) !=
        CURLE_OK)
        return PDR_ERR_INTERNAL;
    return PDR_OK;
}
