/*
** pd_client.c — libcurl requests to PagerDuty and their classification
** (see pd_client.h for the table of outcomes).
*/
#include "pd_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

struct pd_request {
    CURL *easy;
    struct curl_slist *headers;
    pdr_upstream_kind upstream;
    char *body;                 /* the request body: libcurl does not copy it */
    char *resp;                 /* the reply, capped at PD_RESPONSE_MAX */
    size_t resp_len;
    char errbuf[CURL_ERROR_SIZE];
};

const char *pd_error_type_name(pd_error_type t)
{
    switch (t) {
    case PD_ERR_NONE: return "none";
    case PD_ERR_BAD_REQUEST: return "bad_request";
    case PD_ERR_UNAUTHORIZED: return "unauthorized";
    case PD_ERR_RATE_LIMIT: return "rate_limit";
    case PD_ERR_SERVER: return "server_error";
    case PD_ERR_TIMEOUT: return "timeout";
    case PD_ERR_NETWORK: return "network";
    case PD_ERR_TLS: return "tls";
    case PD_ERR_OTHER: return "other";
    }
    return "other";
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    pd_request *r = userdata;
    size_t n = size * nmemb;
    size_t room = PD_RESPONSE_MAX - r->resp_len;
    size_t take = n < room ? n : room;   /* the rest is dropped, not an error */
    memcpy(r->resp + r->resp_len, ptr, take);
    r->resp_len += take;
    r->resp[r->resp_len] = '\0';
    return n;
}

/* The request headers, with "Authorization: Bearer <token>" when token is
** set; NULL when out of memory. */
static struct curl_slist *headers_new(const char *token)
{
    static const char *const fixed[] = {"Content-Type: application/json", "Expect:"};
    struct curl_slist *list = NULL, *h;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        h = curl_slist_append(list, fixed[i]);
        if (!h) goto nomem;
        list = h;
    }
    if (token && *token) {
        char line[PDR_TOKEN_MAX + 32];
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
        h = curl_slist_append(list, line);
        pdr_secure_zero(line, sizeof line);
        if (!h) goto nomem;
        list = h;
    }
    return list;
nomem:
    curl_slist_free_all(list);
    return NULL;
}

pd_request *pd_request_create(const pdr_config *cfg)
{
    char ua[64];
    pd_request *r = pdr_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->resp = pdr_malloc(PD_RESPONSE_MAX + 1);
    r->easy = curl_easy_init();
    snprintf(ua, sizeof ua, "pdrelay/%s", PDR_VERSION);
    r->upstream = cfg->upstream;
    r->headers = headers_new(NULL);
    if (!r->resp || !r->easy || !r->headers) {
        pd_request_destroy(r);
        return NULL;
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* libcurl copies string options; a copy that fails (out of memory) would
    ** silently drop a proxy or CA file: then no request at all. */
    if (curl_easy_setopt(e, CURLOPT_USERAGENT, ua) != CURLE_OK ||
        (cfg->ca_file && curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file) != CURLE_OK) ||
        (cfg->n_upstreams && pd_request_via(r, &cfg->upstreams[0]) != PDR_OK)
#if LIBCURL_VERSION_NUM >= 0x075500
        || curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK
#endif
    ) {
        pd_request_destroy(r);
        return NULL;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)cfg->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Replies are small: a 4 KiB receive buffer instead of 16 KiB per key. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);   /* libcurl's minimum; default 64 KiB */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    return r;
}

pdr_rc pd_request_set_token(pd_request *r, const char *token)
{
    struct curl_slist *h = headers_new(token);
    pdr_rc rc = PDR_OK;
    if (!h) {
        h = headers_new(NULL);
        if (!h) return PDR_ERR_NOMEM;   /* the old headers stay */
        rc = PDR_ERR_NOMEM;
    }
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, h);
    curl_slist_free_all(r->headers);
    r->headers = h;
    return rc;
}

void pd_request_destroy(pd_request *r)
{
    if (!r) return;
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->resp);
    free(r);
}

CURL *pd_request_easy(pd_request *r)
{
    return r->easy;
}

pdr_rc pd_request_via(pd_request *r, const pdr_upstream *u)
{
    /* NULL restores libcurl's default: the environment's proxy; any interface */
    if (curl_easy_setopt(r->easy, CURLOPT_PROXY, u->proxy) != CURLE_OK ||
        curl_easy_setopt(r->easy, CURLOPT_INTERFACE, u->interface) != CURLE_OK)
        return PDR_ERR_NOMEM;
    return PDR_OK;
}

pdr_rc pd_request_prepare(pd_request *r, const char *url, const char *body, size_t len)
{
    char *copy = pdr_malloc(len + 1);
    if (!copy) return PDR_ERR_NOMEM;
    memcpy(copy, body, len);
    copy[len] = '\0';
    /* libcurl copies the URL: a copy that fails would leave the last one. */
    if (curl_easy_setopt(r->easy, CURLOPT_URL, url) != CURLE_OK) {
        free(copy);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, NULL);
        free(r->body);
        r->body = NULL;
        return PDR_ERR_NOMEM;
    }
    free(r->body);
    r->body = copy;
    r->resp_len = 0;
    r->resp[0] = '\0';
    r->errbuf[0] = '\0';
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    return PDR_OK;
}

const char *pd_request_response(const pd_request *r, size_t *len)
{
    *len = r->resp_len;
    return r->resp;
}

/* "HTTP 400: err1; err2" from PagerDuty's body, or its message, or the raw text. */
static void describe_reply(long status, const char *body, size_t len, char *out, size_t outsz)
{
    cJSON *doc = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *errors = doc ? cJSON_GetObjectItemCaseSensitive(doc, "errors") : NULL;
    const cJSON *msg = doc ? cJSON_GetObjectItemCaseSensitive(doc, "message") : NULL;
    size_t n = (size_t)snprintf(out, outsz, "HTTP %ld", status);
    if (cJSON_IsArray(errors) && cJSON_GetArraySize(errors) > 0) {
        const cJSON *e;
        const char *sep = ": ";
        cJSON_ArrayForEach(e, errors) {
            if (!cJSON_IsString(e) || n >= outsz) continue;
            n += (size_t)snprintf(out + n, outsz - n, "%s%s", sep, e->valuestring);
            sep = "; ";
        }
    } else if (cJSON_IsString(msg) && n < outsz) {
        snprintf(out + n, outsz - n, ": %s", msg->valuestring);
    } else if (body && len && n < outsz) {
        snprintf(out + n, outsz - n, ": %.*s", (int)(len < 200 ? len : 200), body);
    }
    cJSON_Delete(doc);
}

static void parse_dedup_key(const char *body, size_t len, pd_result *out)
{
    cJSON *doc = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *dk = doc ? cJSON_GetObjectItemCaseSensitive(doc, "dedup_key") : NULL;
    if (cJSON_IsString(dk)) snprintf(out->dedup_key, sizeof out->dedup_key, "%s", dk->valuestring);
    cJSON_Delete(doc);
}

static pd_error_type curl_error_type(CURLcode cc)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return PD_ERR_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_USE_SSL_FAILED:
        return PD_ERR_TLS;
    default:
        return PD_ERR_NETWORK;
    }
}

void pd_classify(long status, CURLcode cc, const char *body, size_t len, int64_t retry_after_s,
                 const char *curl_detail, pd_result *out)
{
    memset(out, 0, sizeof *out);
    out->http_status = cc == CURLE_OK ? status : 0;
    if (cc != CURLE_OK) {
        out->outcome = PD_RETRY;
        out->type = curl_error_type(cc);
        snprintf(out->error, sizeof out->error, "%s: %s", pd_error_type_name(out->type),
                 curl_detail && *curl_detail ? curl_detail : curl_easy_strerror(cc));
        return;
    }
    if (status >= 200 && status < 300) {
        out->outcome = PD_OK;
        parse_dedup_key(body, len, out);
        return;
    }
    describe_reply(status, body, len, out->error, sizeof out->error);
    if (retry_after_s > 0) out->retry_after_ms = retry_after_s * 1000;
    if (status == 429) {
        out->outcome = PD_RETRY;
        out->type = PD_ERR_RATE_LIMIT;
    } else if (status >= 500 || status == 408) {
        out->outcome = PD_RETRY;
        out->type = status >= 500 ? PD_ERR_SERVER : PD_ERR_TIMEOUT;
    } else if (status == 401 || status == 403) {
        out->outcome = PD_DEAD;
        out->type = PD_ERR_UNAUTHORIZED;
    } else if (status >= 400) {
        out->outcome = PD_DEAD;
        out->type = PD_ERR_BAD_REQUEST;
    } else {
        out->outcome = PD_RETRY;
        out->type = PD_ERR_OTHER;
    }
}

void pd_upstream_adjust(pd_result *res, pdr_upstream_kind upstream)
{
    if (upstream == PDR_UPSTREAM_RELAY && res->outcome == PD_DEAD && res->type == PD_ERR_UNAUTHORIZED)
        res->outcome = PD_RETRY;
}

void pd_request_reply(pd_request *r, long *status, int64_t *retry_after_s)
{
    curl_off_t retry_after = 0;
    *status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, status);
    /* libcurl 7.88 may return a negative value for a date in the past. */
    if (curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &retry_after) != CURLE_OK || retry_after < 0)
        retry_after = 0;
    if (retry_after > 3600) retry_after = 3600;   /* SENDER_RETRY_AFTER_MAX_MS */
    *retry_after_s = (int64_t)retry_after;
}

void pd_request_result(pd_request *r, CURLcode cc, pd_result *out)
{
    long status = 0;
    int64_t retry_after = 0;
    pd_request_reply(r, &status, &retry_after);
    pd_classify(status, cc, r->resp, r->resp_len, retry_after, r->errbuf, out);
    pd_upstream_adjust(out, r->upstream);
}
