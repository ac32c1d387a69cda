/*
** webhook.c — the request to a webhook target and its classification (see
** webhook.h for what is sent and how replies are classified), and the table
** of webhook targets the sender reads.
*/
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* Bytes of a refusing reply quoted in the dead letter's error. */
#define WEBHOOK_EXCERPT_MAX 200
#define WEBHOOK_CONTENT_TYPE "Content-Type: application/json"

static void secure_zero(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--) *v++ = 0;
}

static void str_zero_free(char *s)
{
    if (!s) return;
    secure_zero(s, strlen(s));
    free(s);
}

static void target_free(webhook_target *t)
{
    free(t->name);
    free(t->key);
    free(t->url);
    for (size_t i = 0; t->lines && i < t->n_headers; i++) str_zero_free(t->lines[i]);
    free(t->lines);
}

static pdr_rc target_copy(webhook_target *d, const pdr_target *s)
{
    memset(d, 0, sizeof *d);
    d->name = pdr_strdup(s->name);
    d->key = pdr_strdup(s->webhook_key);
    d->url = pdr_strdup(s->webhook_url);
    d->rate_per_minute = s->rate_per_minute > 0 ? s->rate_per_minute : 1;
    pdr_url_origin(s->webhook_url, d->origin, sizeof d->origin);
    if (!d->name || !d->key || !d->url) return PDR_ERR_NOMEM;
    if (!s->n_headers) return PDR_OK;
    d->lines = pdr_calloc(s->n_headers, sizeof *d->lines);
    if (!d->lines) return PDR_ERR_NOMEM;
    for (size_t i = 0; i < s->n_headers; i++) {
        size_t n = strlen(s->headers[i].name) + strlen(s->headers[i].value) + 3;
        d->n_headers = i + 1;   /* so target_free frees what is there */
        d->lines[i] = pdr_malloc(n);
        if (!d->lines[i]) return PDR_ERR_NOMEM;
        snprintf(d->lines[i], n, "%s: %s", s->headers[i].name, s->headers[i].value);
        if (!strcasecmp(s->headers[i].name, "Content-Type")) d->has_content_type = 1;
    }
    return PDR_OK;
}

pdr_rc webhook_table_new(const pdr_config *cfg, webhook_table **out)
{
    webhook_table *wt = pdr_calloc(1, sizeof *wt);
    size_t n = 0;
    *out = NULL;
    if (!wt) return PDR_ERR_NOMEM;
    for (size_t i = 0; cfg && i < cfg->n_targets; i++) n += cfg->targets[i].webhook_url != NULL;
    if (n && !(wt->t = pdr_calloc(n, sizeof *wt->t))) {
        free(wt);
        return PDR_ERR_NOMEM;
    }
    for (size_t i = 0; cfg && i < cfg->n_targets; i++) {
        if (!cfg->targets[i].webhook_url) continue;
        pdr_rc rc = target_copy(&wt->t[wt->n++], &cfg->targets[i]);
        if (rc) {
            webhook_table_free(wt);
            return rc;
        }
    }
    *out = wt;
    return PDR_OK;
}

void webhook_table_free(webhook_table *wt)
{
    if (!wt) return;
    for (size_t i = 0; i < wt->n; i++) target_free(&wt->t[i]);
    free(wt->t);
    free(wt);
}

const webhook_target *webhook_table_find(const webhook_table *wt, const char *key)
{
    for (size_t i = 0; wt && key && i < wt->n; i++)
        if (!strcmp(wt->t[i].key, key)) return &wt->t[i];
    return NULL;
}

void webhook_headers_free(struct curl_slist *h)
{
    for (struct curl_slist *p = h; p; p = p->next)
        if (p->data) secure_zero(p->data, strlen(p->data));
    curl_slist_free_all(h);
}

static int slist_add(struct curl_slist **h, const char *line)
{
    struct curl_slist *n = curl_slist_append(*h, line);
    if (!n) return -1;
    *h = n;
    return 0;
}

struct curl_slist *webhook_headers(const webhook_target *t)
{
    struct curl_slist *h = NULL;
    if ((!t->has_content_type && slist_add(&h, WEBHOOK_CONTENT_TYPE)) || slist_add(&h, "Expect:"))
        goto fail;
    for (size_t i = 0; i < t->n_headers; i++)
        if (slist_add(&h, t->lines[i])) goto fail;
    return h;
fail:
    webhook_headers_free(h);
    return NULL;
}

pdr_rc webhook_prepare(pd_request *r, const webhook_target *t, const struct curl_slist *h, const char *body,
                       size_t len)
{
    pdr_rc rc = pd_request_prepare(r, t->url, body, len);
    if (rc) return rc;
    /* The lane of a webhook key only ever sends to webhooks: its handle
    ** keeps this list until the next request replaces it. */
    curl_easy_setopt(pd_request_easy(r), CURLOPT_HTTPHEADER, h);
    return PDR_OK;
}

void webhook_classify(long status, CURLcode cc, const char *body, size_t len, int64_t retry_after_s,
                      const char *curl_detail, pd_result *out)
{
    /* The outcome and the type are PagerDuty's table (pd_client.h), which is
    ** the one webhook.h gives; the text is ours: the reply is not
    ** PagerDuty's shape, so a short escaped excerpt of it. */
    pd_classify(status, cc, NULL, 0, retry_after_s, curl_detail, out);
    out->dedup_key[0] = '\0';
    if (cc != CURLE_OK || out->outcome == PD_OK) return;
    size_t n = (size_t)snprintf(out->error, sizeof out->error, "HTTP %ld", status);
    if (body && len && n + 2 < sizeof out->error) {
        size_t take = len < WEBHOOK_EXCERPT_MAX ? len : WEBHOOK_EXCERPT_MAX;
        memcpy(out->error + n, ": ", 3);
        n += 2;
        pdr_log_escape(out->error + n, sizeof out->error - n, body, take, PDR_ESC_TEXT, NULL);
    }
}

void webhook_scrub(char *text, const struct curl_slist *h)
{
    for (; h; h = h->next) {
        const char *v = strchr(h->data, ':');
        size_t vl;
        if (!v || !strcmp(h->data, WEBHOOK_CONTENT_TYPE)) continue;   /* ours, no secret */
        for (v++; *v == ' '; v++) {}
        vl = strlen(v);
        if (!vl) continue;
        for (char *p = strstr(text, v); p; p = strstr(p + vl, v)) memset(p, '*', vl);
    }
}

void webhook_result(pd_request *r, CURLcode cc, const struct curl_slist *h, pd_result *out)
{
    long status = 0;
    int64_t retry_after = 0;
    size_t len = 0;
    const char *body;
    /* No reply: pd_client's classification and libcurl's own words. */
    if (cc != CURLE_OK) {
        pd_request_result(r, cc, out);
        webhook_scrub(out->error, h);
        return;
    }
    body = pd_request_response(r, &len);
    pd_request_reply(r, &status, &retry_after);
    webhook_classify(status, cc, body, len, retry_after, NULL, out);
    webhook_scrub(out->error, h);
}
