/* callwright C SDK: see callwright.h. */
#include "callwright.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ memory */

static void *cw_alloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p) abort();
    return p;
}

static void *cw_grow(void *ptr, size_t size) {
    void *p = realloc(ptr, size ? size : 1);
    if (!p) abort();
    return p;
}

static char *cw_strndup(const char *s, size_t len) {
    char *out = cw_alloc(len + 1);
    if (len) memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

static char *cw_strdup0(const char *s) { return s ? cw_strndup(s, strlen(s)) : NULL; }

char *cw_string_dup(const call_flow_string_t *s) { return cw_strndup((const char *)s->ptr, s->len); }

/* A component string borrowing a C string (for arguments to imports, which borrow them). */
static call_flow_string_t cw_borrow(const char *s) {
    call_flow_string_t out;
    out.ptr = (uint8_t *)(s ? s : "");
    out.len = s ? strlen(s) : 0;
    return out;
}

static call_flow_option_string_t cw_borrow_opt(const char *s) {
    call_flow_option_string_t out;
    memset(&out, 0, sizeof out);
    if (s) {
        out.is_some = true;
        out.val = cw_borrow(s);
    }
    return out;
}

/* ================================================================ errors */

static void cw_err_set(cw_err *err, cw_err_kind kind, uint16_t status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cw_err_set(cw_err *err, cw_err_kind kind, uint16_t status, const char *fmt, ...) {
    if (!err) return;
    err->kind = kind;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

int cw_fail(cw_err *err, const char *fmt, ...) {
    if (err) {
        err->kind = CW_ERR_FLOW;
        err->status = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Converts (and frees) a call-error. */
static int cw_call_error(cw_err *err, callwright_voice_call_call_error_t *e) {
    switch (e->tag) {
    case CALLWRIGHT_VOICE_TYPES_CALL_ERROR_CALL_ENDED:
        cw_err_set(err, CW_ERR_CALL_ENDED, 0, "call ended");
        break;
    case CALLWRIGHT_VOICE_TYPES_CALL_ERROR_INVALID_STATE:
        cw_err_set(err, CW_ERR_INVALID_STATE, 0, "invalid state: %.*s", (int)e->val.invalid_state.len,
                   (const char *)e->val.invalid_state.ptr);
        break;
    case CALLWRIGHT_VOICE_TYPES_CALL_ERROR_INVALID_ARGUMENT:
        cw_err_set(err, CW_ERR_INVALID_ARGUMENT, 0, "invalid argument: %.*s", (int)e->val.invalid_argument.len,
                   (const char *)e->val.invalid_argument.ptr);
        break;
    case CALLWRIGHT_VOICE_TYPES_CALL_ERROR_TIMEOUT:
        cw_err_set(err, CW_ERR_TIMEOUT, 0, "timeout");
        break;
    default:
        cw_err_set(err, CW_ERR_OTHER, 0, "%.*s", (int)e->val.other.len, (const char *)e->val.other.ptr);
        break;
    }
    callwright_voice_call_call_error_free(e);
    return -1;
}

static int cw_hook_error(cw_err *err, callwright_voice_hooks_hook_error_t *e) {
    switch (e->tag) {
    case CALLWRIGHT_VOICE_HOOKS_HOOK_ERROR_NOT_ALLOWED:
        cw_err_set(err, CW_ERR_HOOK_NOT_ALLOWED, 0, "not allowed: %.*s", (int)e->val.not_allowed.len,
                   (const char *)e->val.not_allowed.ptr);
        break;
    case CALLWRIGHT_VOICE_HOOKS_HOOK_ERROR_INVALID:
        cw_err_set(err, CW_ERR_HOOK_INVALID, 0, "invalid: %.*s", (int)e->val.invalid.len,
                   (const char *)e->val.invalid.ptr);
        break;
    case CALLWRIGHT_VOICE_HOOKS_HOOK_ERROR_TIMEOUT:
        cw_err_set(err, CW_ERR_HOOK_TIMEOUT, 0, "timeout");
        break;
    default:
        cw_err_set(err, CW_ERR_HOOK_TRANSPORT, 0, "transport: %.*s", (int)e->val.transport.len,
                   (const char *)e->val.transport.ptr);
        break;
    }
    callwright_voice_hooks_hook_error_free(e);
    return -1;
}

static int cw_verb_error(cw_err *err, callwright_voice_dispatch_verb_error_t *e) {
    static const cw_err_kind kinds[] = {CW_ERR_UNKNOWN_VERB, CW_ERR_INVALID_ARGUMENTS, CW_ERR_VERB_FAILED};
    /* Every case carries one string, at the same place. */
    call_flow_string_t *why = &e->val.unknown_verb;
    cw_err_set(err, kinds[e->tag < 3 ? e->tag : 2], 0, "%.*s", (int)why->len, (const char *)why->ptr);
    callwright_voice_dispatch_verb_error_free(e);
    return -1;
}

/* ================================================================ buffers */

static void cw_buf_reserve(cw_buf *buf, size_t extra) {
    if (buf->len + extra + 1 <= buf->cap) return;
    size_t cap = buf->cap ? buf->cap : 64;
    while (cap < buf->len + extra + 1) cap *= 2;
    buf->ptr = cw_grow(buf->ptr, cap);
    buf->cap = cap;
}

void cw_buf_append(cw_buf *buf, const char *data, size_t len) {
    cw_buf_reserve(buf, len);
    if (len) memcpy(buf->ptr + buf->len, data, len);
    buf->len += len;
    buf->ptr[buf->len] = '\0';
}

void cw_buf_puts(cw_buf *buf, const char *text) { cw_buf_append(buf, text, strlen(text)); }

void cw_buf_printf(cw_buf *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    cw_buf_reserve(buf, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(buf->ptr + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
}

void cw_buf_json_string(cw_buf *buf, const char *text, size_t len) {
    static const char hex[] = "0123456789abcdef";
    cw_buf_append(buf, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
                u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = '\0';
                esc = u;
            }
        }
        if (esc) {
            cw_buf_append(buf, text + start, i - start);
            cw_buf_puts(buf, esc);
            start = i + 1;
        }
    }
    cw_buf_append(buf, text + start, len - start);
    cw_buf_append(buf, "\"", 1);
}

void cw_buf_free(cw_buf *buf) {
    free(buf->ptr);
    buf->ptr = NULL;
    buf->len = buf->cap = 0;
}

/* ================================================================ JSON reader */

#define CW_JSON_MAX_DEPTH 128

typedef struct cw_parser {
    const char *p;
    const char *end;
} cw_parser;

static void cw_skip_ws(cw_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static void cw_json_clear(cw_json *v) {
    switch (v->type) {
    case CW_JSON_STRING:
        free(v->string);
        break;
    case CW_JSON_ARRAY:
    case CW_JSON_OBJECT:
        for (size_t i = 0; i < v->count; i++) {
            cw_json_clear(&v->items[i]);
            if (v->keys) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
        break;
    default:
        break;
    }
    memset(v, 0, sizeof *v);
}

static int cw_hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static void cw_utf8(cw_buf *b, unsigned cp) {
    char o[4];
    size_t n;
    if (cp < 0x80) { o[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    cw_buf_append(b, o, n);
}

/* Parses a string literal (at its opening quote) into `out`. */
static int cw_parse_string(cw_parser *ps, cw_buf *out) {
    ps->p++; /* the quote */
    cw_buf_append(out, "", 0);
    while (ps->p < ps->end) {
        const char *run = ps->p;
        while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\' && (unsigned char)*ps->p >= 0x20) ps->p++;
        cw_buf_append(out, run, (size_t)(ps->p - run));
        if (ps->p >= ps->end) return -1;
        char c = *ps->p++;
        if (c == '"') return 0;
        if (c != '\\') return -1; /* a control character */
        if (ps->p >= ps->end) return -1;
        char e = *ps->p++;
        switch (e) {
        case '"': cw_buf_append(out, "\"", 1); break;
        case '\\': cw_buf_append(out, "\\", 1); break;
        case '/': cw_buf_append(out, "/", 1); break;
        case 'b': cw_buf_append(out, "\b", 1); break;
        case 'f': cw_buf_append(out, "\f", 1); break;
        case 'n': cw_buf_append(out, "\n", 1); break;
        case 'r': cw_buf_append(out, "\r", 1); break;
        case 't': cw_buf_append(out, "\t", 1); break;
        case 'u': {
            unsigned cp;
            if (ps->end - ps->p < 4 || cw_hex4(ps->p, &cp)) return -1;
            ps->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo;
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || cw_hex4(ps->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return -1; /* a lone surrogate (serde_json refuses it too) */
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return -1;
            }
            cw_utf8(out, cp);
            break;
        }
        default:
            return -1;
        }
    }
    return -1;
}

static int cw_parse_number(cw_parser *ps, cw_json *v) {
    const char *start = ps->p;
    bool negative = false, integer = true;
    if (ps->p < ps->end && *ps->p == '-') { negative = true; ps->p++; }
    if (ps->p >= ps->end) return -1;
    if (*ps->p == '0') ps->p++;
    else if (*ps->p >= '1' && *ps->p <= '9') while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    else return -1;
    if (ps->p < ps->end && *ps->p == '.') {
        integer = false;
        ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return -1;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        integer = false;
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return -1;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    char *text = cw_strndup(start, (size_t)(ps->p - start));
    v->type = CW_JSON_NUMBER;
    v->number = strtod(text, NULL);
    if (integer && !negative) {
        uint64_t u = 0;
        bool overflow = false;
        for (const char *d = text; *d; d++) {
            unsigned digit = (unsigned)(*d - '0');
            if (u > (UINT64_MAX - digit) / 10) { overflow = true; break; }
            u = u * 10 + digit;
        }
        if (!overflow) { v->is_u64 = true; v->u64 = u; }
    }
    free(text);
    return 0;
}

static int cw_parse_literal(cw_parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return -1;
    ps->p += n;
    return 0;
}

static int cw_parse_value(cw_parser *ps, cw_json *v, int depth);

/* Parses an array (closing ']') or object (closing '}') body into v. */
static int cw_parse_container(cw_parser *ps, cw_json *v, int depth, bool object) {
    size_t cap = 0;
    v->type = object ? CW_JSON_OBJECT : CW_JSON_ARRAY;
    ps->p++;
    cw_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == (object ? '}' : ']')) { ps->p++; return 0; }
    for (;;) {
        if (v->count == cap) {
            cap = cap ? cap * 2 : 4;
            v->items = cw_grow(v->items, cap * sizeof *v->items);
            if (object) v->keys = cw_grow(v->keys, cap * sizeof *v->keys);
        }
        cw_json *item = &v->items[v->count];
        memset(item, 0, sizeof *item);
        if (object) {
            cw_skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') return -1;
            cw_buf key = {0};
            if (cw_parse_string(ps, &key)) { cw_buf_free(&key); return -1; }
            v->keys[v->count] = key.ptr;
            v->count++; /* counted now so that a failure frees the key */
            cw_skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return -1;
            ps->p++;
            if (cw_parse_value(ps, item, depth + 1)) return -1;
        } else {
            v->count++;
            if (cw_parse_value(ps, item, depth + 1)) return -1;
        }
        cw_skip_ws(ps);
        if (ps->p >= ps->end) return -1;
        char c = *ps->p++;
        if (c == ',') continue;
        if (c == (object ? '}' : ']')) return 0;
        return -1;
    }
}

static int cw_parse_value(cw_parser *ps, cw_json *v, int depth) {
    if (depth > CW_JSON_MAX_DEPTH) return -1;
    cw_skip_ws(ps);
    if (ps->p >= ps->end) return -1;
    switch (*ps->p) {
    case '{': return cw_parse_container(ps, v, depth, true);
    case '[': return cw_parse_container(ps, v, depth, false);
    case '"': {
        cw_buf s = {0};
        if (cw_parse_string(ps, &s)) { cw_buf_free(&s); return -1; }
        v->type = CW_JSON_STRING;
        v->string = s.ptr;
        v->string_len = s.len;
        return 0;
    }
    case 't': v->type = CW_JSON_BOOL; v->boolean = true; return cw_parse_literal(ps, "true");
    case 'f': v->type = CW_JSON_BOOL; v->boolean = false; return cw_parse_literal(ps, "false");
    case 'n': v->type = CW_JSON_NULL; return cw_parse_literal(ps, "null");
    default: return cw_parse_number(ps, v);
    }
}

cw_json *cw_json_parse(const char *text, size_t len) {
    cw_parser ps = {text, text + len};
    cw_json *v = cw_alloc(sizeof *v);
    memset(v, 0, sizeof *v);
    if (cw_parse_value(&ps, v, 0) == 0) {
        cw_skip_ws(&ps);
        if (ps.p == ps.end) return v;
    }
    cw_json_clear(v);
    free(v);
    return NULL;
}

void cw_json_free(cw_json *value) {
    if (!value) return;
    cw_json_clear(value);
    free(value);
}

const cw_json *cw_json_get(const cw_json *object, const char *key) {
    if (!object || object->type != CW_JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = object->count; i-- > 0;) {
        if (strlen(object->keys[i]) == n && memcmp(object->keys[i], key, n) == 0) return &object->items[i];
    }
    return NULL;
}

const cw_json *cw_json_at(const cw_json *array, size_t index) {
    if (!array || array->type != CW_JSON_ARRAY || index >= array->count) return NULL;
    return &array->items[index];
}

const char *cw_json_get_str(const cw_json *object, const char *key) {
    const cw_json *v = cw_json_get(object, key);
    return v && v->type == CW_JSON_STRING ? v->string : NULL;
}

bool cw_json_get_u64(const cw_json *object, const char *key, uint64_t *out) {
    const cw_json *v = cw_json_get(object, key);
    if (!v || v->type != CW_JSON_NUMBER || !v->is_u64) return false;
    *out = v->u64;
    return true;
}

bool cw_json_get_bool(const cw_json *object, const char *key, bool *out) {
    const cw_json *v = cw_json_get(object, key);
    if (!v || v->type != CW_JSON_BOOL) return false;
    *out = v->boolean;
    return true;
}

void cw_json_write(cw_buf *buf, const cw_json *v) {
    switch (v->type) {
    case CW_JSON_NULL: cw_buf_puts(buf, "null"); break;
    case CW_JSON_BOOL: cw_buf_puts(buf, v->boolean ? "true" : "false"); break;
    case CW_JSON_NUMBER:
        if (v->is_u64) cw_buf_printf(buf, "%llu", (unsigned long long)v->u64);
        else {
            /* The shortest text that reads back as the same double. */
            char text[32];
            for (int precision = 15; precision <= 17; precision++) {
                snprintf(text, sizeof text, "%.*g", precision, v->number);
                if (strtod(text, NULL) == v->number) break;
            }
            cw_buf_puts(buf, text);
        }
        break;
    case CW_JSON_STRING: cw_buf_json_string(buf, v->string, v->string_len); break;
    case CW_JSON_ARRAY:
    case CW_JSON_OBJECT:
        cw_buf_puts(buf, v->type == CW_JSON_ARRAY ? "[" : "{");
        for (size_t i = 0; i < v->count; i++) {
            if (i) cw_buf_puts(buf, ",");
            if (v->type == CW_JSON_OBJECT) {
                cw_buf_json_string(buf, v->keys[i], strlen(v->keys[i]));
                cw_buf_puts(buf, ":");
            }
            cw_json_write(buf, &v->items[i]);
        }
        cw_buf_puts(buf, v->type == CW_JSON_ARRAY ? "]" : "}");
        break;
    }
}

/* ================================================================ JSON objects to send */

static void cw_obj_put(cw_obj *obj, const char *key, char *value) {
    for (size_t i = 0; i < obj->count; i++) {
        if (strcmp(obj->keys[i], key) == 0) {
            free(obj->values[i]);
            obj->values[i] = value;
            return;
        }
    }
    if (obj->count == obj->cap) {
        obj->cap = obj->cap ? obj->cap * 2 : 8;
        obj->keys = cw_grow(obj->keys, obj->cap * sizeof *obj->keys);
        obj->values = cw_grow(obj->values, obj->cap * sizeof *obj->values);
    }
    obj->keys[obj->count] = cw_strdup0(key);
    obj->values[obj->count] = value;
    obj->count++;
}

void cw_obj_set_str(cw_obj *obj, const char *key, const char *value) {
    cw_buf b = {0};
    cw_buf_json_string(&b, value, strlen(value));
    cw_obj_put(obj, key, b.ptr);
}

void cw_obj_set_uint(cw_obj *obj, const char *key, uint64_t value) {
    cw_buf b = {0};
    cw_buf_printf(&b, "%llu", (unsigned long long)value);
    cw_obj_put(obj, key, b.ptr);
}

void cw_obj_set_int(cw_obj *obj, const char *key, int64_t value) {
    cw_buf b = {0};
    cw_buf_printf(&b, "%lld", (long long)value);
    cw_obj_put(obj, key, b.ptr);
}

void cw_obj_set_bool(cw_obj *obj, const char *key, bool value) { cw_obj_put(obj, key, cw_strdup0(value ? "true" : "false")); }

void cw_obj_set_null(cw_obj *obj, const char *key) { cw_obj_put(obj, key, cw_strdup0("null")); }

void cw_obj_set_raw(cw_obj *obj, const char *key, const char *json) { cw_obj_put(obj, key, cw_strdup0(json)); }

void cw_obj_remove(cw_obj *obj, const char *key) {
    for (size_t i = 0; i < obj->count; i++) {
        if (strcmp(obj->keys[i], key) == 0) {
            free(obj->keys[i]);
            free(obj->values[i]);
            memmove(&obj->keys[i], &obj->keys[i + 1], (obj->count - i - 1) * sizeof *obj->keys);
            memmove(&obj->values[i], &obj->values[i + 1], (obj->count - i - 1) * sizeof *obj->values);
            obj->count--;
            return;
        }
    }
}

void cw_obj_extend(cw_obj *obj, const cw_obj *from) {
    for (size_t i = 0; i < from->count; i++) cw_obj_set_raw(obj, from->keys[i], from->values[i]);
}

char *cw_obj_to_json(const cw_obj *obj) {
    /* Sorted by key, byte-wise, as serde_json's (BTreeMap) Map writes them. */
    size_t *order = cw_alloc(obj->count * sizeof *order);
    for (size_t i = 0; i < obj->count; i++) {
        size_t j = i;
        while (j > 0 && strcmp(obj->keys[order[j - 1]], obj->keys[i]) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    cw_buf b = {0};
    cw_buf_puts(&b, "{");
    for (size_t k = 0; k < obj->count; k++) {
        size_t i = order[k];
        if (k) cw_buf_puts(&b, ",");
        cw_buf_json_string(&b, obj->keys[i], strlen(obj->keys[i]));
        cw_buf_puts(&b, ":");
        cw_buf_puts(&b, obj->values[i]);
    }
    cw_buf_puts(&b, "}");
    free(order);
    return b.ptr;
}

void cw_obj_free(cw_obj *obj) {
    for (size_t i = 0; i < obj->count; i++) {
        free(obj->keys[i]);
        free(obj->values[i]);
    }
    free(obj->keys);
    free(obj->values);
    memset(obj, 0, sizeof *obj);
}

/* ================================================================ headers and bodies */

void cw_headers_add(cw_headers *headers, const char *name, const char *value) {
    if (headers->count == headers->cap) {
        headers->cap = headers->cap ? headers->cap * 2 : 4;
        headers->items = cw_grow(headers->items, headers->cap * sizeof *headers->items);
    }
    callwright_voice_types_header_t *h = &headers->items[headers->count++];
    call_flow_string_dup(&h->name, name);
    call_flow_string_dup(&h->value, value);
}

void cw_headers_add_json_object(cw_headers *headers, const cw_json *object) {
    if (!object || object->type != CW_JSON_OBJECT) return;
    /* The distinct keys (a repeated key keeps its last value), sorted. */
    const char **names = cw_alloc(object->count * sizeof *names);
    size_t n = 0;
    for (size_t i = 0; i < object->count; i++) {
        bool seen = false;
        for (size_t k = 0; k < n; k++) seen = seen || strcmp(names[k], object->keys[i]) == 0;
        if (seen) continue;
        size_t j = n++;
        while (j > 0 && strcmp(names[j - 1], object->keys[i]) > 0) {
            names[j] = names[j - 1];
            j--;
        }
        names[j] = object->keys[i];
    }
    for (size_t k = 0; k < n; k++) {
        const char *value = cw_json_get_str(object, names[k]);
        if (value) cw_headers_add(headers, names[k], value);
    }
    free(names);
}

void cw_headers_free(cw_headers *headers) {
    for (size_t i = 0; i < headers->count; i++) callwright_voice_types_header_free(&headers->items[i]);
    free(headers->items);
    memset(headers, 0, sizeof *headers);
}

static callwright_voice_call_list_header_t cw_header_list(const cw_headers *headers) {
    callwright_voice_call_list_header_t list;
    list.ptr = headers ? headers->items : NULL;
    list.len = headers ? headers->count : 0;
    return list;
}

static callwright_voice_call_body_t cw_body_of(const cw_body *body) {
    callwright_voice_call_body_t out;
    out.content_type = cw_borrow(body->content_type);
    out.data.ptr = (uint8_t *)body->data;
    out.data.len = body->len;
    return out;
}

static bool cw_ascii_ieq(const uint8_t *a, size_t alen, const char *b) {
    size_t blen = strlen(b);
    if (alen != blen) return false;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
        if (x != y) return false;
    }
    return true;
}

char *cw_header_find(const callwright_voice_call_list_header_t *headers, const char *name) {
    for (size_t i = 0; i < headers->len; i++) {
        if (cw_ascii_ieq(headers->ptr[i].name.ptr, headers->ptr[i].name.len, name))
            return cw_string_dup(&headers->ptr[i].value);
    }
    return NULL;
}

/* ================================================================ calls */

void cw_call_info_get(const cw_call *call, cw_call_info *out) {
    memset(out, 0, sizeof *out);
    callwright_voice_call_method_call_info(call->handle, &out->raw);
    out->id = cw_string_dup(&out->raw.id);
    out->sip_call_id = cw_string_dup(&out->raw.sip_call_id);
    out->from = cw_string_dup(&out->raw.from);
    out->to = cw_string_dup(&out->raw.to);
    out->to_user = cw_string_dup(&out->raw.to_user);
    out->from_user = cw_string_dup(&out->raw.from_user);
    out->direction = out->raw.direction == CALLWRIGHT_VOICE_TYPES_DIRECTION_OUTBOUND ? CW_OUTBOUND : CW_INBOUND;
    out->request_uri = cw_string_dup(&out->raw.request_uri);
    out->remote_address = cw_string_dup(&out->raw.remote_address);
    out->transport = cw_string_dup(&out->raw.transport);
}

void cw_call_info_free(cw_call_info *info) {
    free(info->id);
    free(info->sip_call_id);
    free(info->from);
    free(info->to);
    free(info->to_user);
    free(info->from_user);
    free(info->request_uri);
    free(info->remote_address);
    free(info->transport);
    callwright_voice_call_call_info_free(&info->raw);
    memset(info, 0, sizeof *info);
}

char *cw_call_header(const cw_call *call, const char *name) {
    callwright_voice_call_call_info_t info;
    callwright_voice_call_method_call_info(call->handle, &info);
    char *value = cw_header_find(&info.headers, name);
    callwright_voice_call_call_info_free(&info);
    return value;
}

int cw_call_ring(const cw_call *call, uint16_t status, const cw_headers *headers, const cw_body *body, cw_err *err) {
    callwright_voice_call_list_header_t list = cw_header_list(headers);
    callwright_voice_call_body_t b;
    if (body) b = cw_body_of(body);
    callwright_voice_call_call_error_t e;
    if (!callwright_voice_call_method_call_ring(call->handle, status, &list, body ? &b : NULL, &e))
        return cw_call_error(err, &e);
    return 0;
}

int cw_call_answer(const cw_call *call, const cw_headers *headers, const cw_body *body, cw_err *err) {
    callwright_voice_call_list_header_t list = cw_header_list(headers);
    callwright_voice_call_body_t b;
    if (body) b = cw_body_of(body);
    callwright_voice_call_call_error_t e;
    if (!callwright_voice_call_method_call_answer(call->handle, &list, body ? &b : NULL, &e))
        return cw_call_error(err, &e);
    return 0;
}

int cw_call_answer_if_needed(const cw_call *call, cw_err *err) {
    cw_err e;
    if (cw_call_answer(call, NULL, NULL, &e) == 0 || e.kind == CW_ERR_INVALID_STATE) return 0;
    if (err) *err = e;
    return -1;
}

int cw_call_reject(const cw_call *call, uint16_t status, const char *reason, const cw_headers *headers, cw_err *err) {
    callwright_voice_call_list_header_t list = cw_header_list(headers);
    call_flow_string_t r = cw_borrow(reason);
    callwright_voice_call_call_error_t e;
    if (!callwright_voice_call_method_call_reject(call->handle, status, reason ? &r : NULL, &list, &e))
        return cw_call_error(err, &e);
    return 0;
}

int cw_call_hangup(const cw_call *call, cw_err *err) {
    callwright_voice_call_call_error_t e;
    if (!callwright_voice_call_method_call_hangup(call->handle, &e)) return cw_call_error(err, &e);
    return 0;
}

int cw_call_respond(const cw_call *call, uint64_t request_id, uint16_t status, const cw_headers *headers,
                    const cw_body *body, cw_err *err) {
    callwright_voice_call_list_header_t list = cw_header_list(headers);
    callwright_voice_call_body_t b;
    if (body) b = cw_body_of(body);
    callwright_voice_call_call_error_t e;
    if (!callwright_voice_call_method_call_respond(call->handle, request_id, status, &list, body ? &b : NULL, &e))
        return cw_call_error(err, &e);
    return 0;
}

int cw_call_sip_request(const cw_call *call, const char *method, const cw_headers *headers, const cw_body *body,
                        cw_response *out, cw_err *err) {
    memset(out, 0, sizeof *out);
    call_flow_string_t m = cw_borrow(method);
    callwright_voice_call_list_header_t list = cw_header_list(headers);
    callwright_voice_call_body_t b;
    if (body) b = cw_body_of(body);
    callwright_voice_call_call_error_t e;
    if (!callwright_voice_call_method_call_sip_request(call->handle, &m, &list, body ? &b : NULL, &out->raw, &e))
        return cw_call_error(err, &e);
    out->status = out->raw.status;
    out->reason = cw_string_dup(&out->raw.reason);
    return 0;
}

void cw_response_free(cw_response *response) {
    free(response->reason);
    callwright_voice_call_sip_response_free(&response->raw);
    memset(response, 0, sizeof *response);
}

int cw_call_next_event(const cw_call *call, int64_t timeout_ms, cw_event *out) {
    memset(out, 0, sizeof *out);
    uint32_t t = timeout_ms > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)(timeout_ms < 0 ? 0 : timeout_ms);
    if (!callwright_voice_call_method_call_next_event(call->handle, timeout_ms < 0 ? NULL : &t, &out->raw)) return 0;
    out->kind = (cw_event_kind)out->raw.tag;
    switch (out->raw.tag) {
    case CALLWRIGHT_VOICE_CALL_CALL_EVENT_ENDED:
        out->end_reason = (cw_end_reason)out->raw.val.ended.tag;
        if (out->raw.val.ended.tag == CALLWRIGHT_VOICE_CALL_END_REASON_REJECTED)
            out->end_status = out->raw.val.ended.val.rejected;
        else if (out->raw.val.ended.tag == CALLWRIGHT_VOICE_CALL_END_REASON_FAILED)
            out->end_status = out->raw.val.ended.val.failed;
        break;
    case CALLWRIGHT_VOICE_CALL_CALL_EVENT_REQUEST:
        out->request_id = out->raw.val.request.id;
        out->method = cw_string_dup(&out->raw.val.request.method);
        break;
    case CALLWRIGHT_VOICE_CALL_CALL_EVENT_REFER: {
        callwright_voice_call_inbound_refer_t *r = &out->raw.val.refer;
        out->request_id = r->id;
        out->refer_to = cw_string_dup(&r->refer_to);
        if (r->referred_by.is_some) out->referred_by = cw_string_dup(&r->referred_by.val);
        if (r->replaces.is_some) out->replaces = cw_string_dup(&r->replaces.val);
        break;
    }
    default:
        break;
    }
    return 1;
}

void cw_event_free(cw_event *event) {
    free(event->method);
    free(event->refer_to);
    free(event->referred_by);
    free(event->replaces);
    callwright_voice_call_call_event_free(&event->raw);
    memset(event, 0, sizeof *event);
}

const char *cw_end_reason_name(const cw_event *event, char *buf, size_t size) {
    switch (event->end_reason) {
    case CW_END_REMOTE_HANGUP: return "remote-hangup";
    case CW_END_LOCAL_HANGUP: return "local-hangup";
    case CW_END_CANCELLED: return "cancelled";
    case CW_END_NO_ACK: return "no-ack";
    case CW_END_REJECTED: snprintf(buf, size, "rejected(%u)", (unsigned)event->end_status); return buf;
    case CW_END_FAILED: snprintf(buf, size, "failed(%u)", (unsigned)event->end_status); return buf;
    }
    return "unknown";
}

int cw_call_next_event_until_end(const cw_call *call, uint64_t timeout_ms, cw_event *out) {
    uint64_t deadline = cw_now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = cw_now_ms();
        if (now >= deadline) {
            memset(out, 0, sizeof *out);
            return 0;
        }
        uint64_t left = deadline - now;
        if (!cw_call_next_event(call, (int64_t)(left > UINT32_MAX ? UINT32_MAX : left), out)) return 0;
        if (out->kind != CW_EVENT_CONFIRMED) return 1;
        cw_event_free(out);
    }
}

void cw_call_answer_routine_request(const cw_call *call, const cw_event *request) {
    if (request->kind != CW_EVENT_REQUEST) return;
    const char *m = request->method;
    bool routine = strcmp(m, "INFO") == 0 || strcmp(m, "MESSAGE") == 0 || strcmp(m, "NOTIFY") == 0 ||
                   strcmp(m, "OPTIONS") == 0;
    cw_call_respond(call, request->request_id, routine ? 200 : 501, NULL, NULL, NULL);
    if (!routine) return;
    char *text = cw_var_get(CW_ROUTINE_REQUEST_HOOK);
    if (!text) return;
    cw_json *value = cw_json_parse(text, strlen(text));
    free(text);
    cw_hook hook;
    if (value && cw_hook_from_json(value, &hook)) {
        cw_call_info info;
        cw_call_info_get(call, &info);
        cw_obj payload = {0};
        cw_jambonz_call_fields(&info, "in-progress", &payload);
        const callwright_voice_call_incoming_request_t *r = &request->raw.val.request;
        cw_obj headers = {0};
        for (size_t i = 0; i < r->headers.len; i++) {
            char *name = cw_string_dup(&r->headers.ptr[i].name);
            for (char *c = name; *c; c++)
                if (*c >= 'A' && *c <= 'Z') *c = (char)(*c + 32);
            char *v = cw_string_dup(&r->headers.ptr[i].value);
            cw_obj_set_str(&headers, name, v);
            free(name);
            free(v);
        }
        char *headers_json = cw_obj_to_json(&headers);
        cw_obj_set_str(&payload, "sip_method", m);
        cw_obj_set_raw(&payload, "sip_headers", headers_json);
        cw_buf body = {0};
        cw_buf_json_string(&body, r->body.is_some ? (const char *)r->body.val.data.ptr : "",
                           r->body.is_some ? r->body.val.data.len : 0);
        cw_obj_set_raw(&payload, "sip_body", body.ptr);
        char *json = cw_obj_to_json(&payload);
        cw_err err;
        if (cw_hooks_notify(&hook, json, &err))
            cw_log(CW_WARN, "sipRequestWithinDialogHook %s not queued: %s", hook.url, err.message);
        free(json);
        cw_buf_free(&body);
        free(headers_json);
        cw_obj_free(&headers);
        cw_obj_free(&payload);
        cw_call_info_free(&info);
        cw_hook_free(&hook);
    }
    cw_json_free(value);
}

bool cw_call_has_ended(const cw_call *call) {
    for (;;) {
        cw_event ev;
        if (!cw_call_next_event(call, 0, &ev)) return false;
        bool ended = ev.kind == CW_EVENT_ENDED;
        if (ev.kind == CW_EVENT_REQUEST) cw_call_answer_routine_request(call, &ev);
        cw_event_free(&ev);
        if (ended) return true;
    }
}

bool cw_call_wait_for_end(const cw_call *call, uint64_t timeout_ms) {
    uint64_t end = cw_now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = cw_now_ms();
        if (now >= end) return false;
        cw_event ev;
        uint64_t left = end - now;
        if (!cw_call_next_event(call, (int64_t)(left > UINT32_MAX ? UINT32_MAX : left), &ev)) return false;
        bool ended = ev.kind == CW_EVENT_ENDED;
        if (ev.kind == CW_EVENT_REQUEST) cw_call_answer_routine_request(call, &ev);
        cw_event_free(&ev);
        if (ended) return true;
    }
}

static void cw_call_from_own(cw_call *out, callwright_voice_call_own_call_t own) {
    out->own = own;
    out->handle = callwright_voice_call_borrow_call(own);
    out->owned = true;
}

int cw_call_accept_refer(const cw_call *call, uint64_t request_id, cw_call *out, cw_err *err) {
    memset(out, 0, sizeof *out);
    callwright_voice_call_own_call_t own;
    callwright_voice_call_call_error_t e;
    if (!callwright_voice_call_method_call_accept_refer(call->handle, request_id, &own, &e)) return cw_call_error(err, &e);
    cw_call_from_own(out, own);
    return 0;
}

void cw_dial_request_init(cw_dial_request *request, const char *target) {
    memset(request, 0, sizeof *request);
    request->target = target;
    request->timeout_ms = -1;
}

static call_flow_option_u32_t cw_opt_u32(int64_t ms) {
    call_flow_option_u32_t out = {false, 0};
    if (ms >= 0) {
        out.is_some = true;
        out.val = ms > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    }
    return out;
}

static callwright_voice_call_option_credentials_t cw_opt_credentials(const char *username, const char *password) {
    callwright_voice_call_option_credentials_t out;
    memset(&out, 0, sizeof out);
    if (username && password) {
        out.is_some = true;
        out.val.username = cw_borrow(username);
        out.val.password = cw_borrow(password);
    }
    return out;
}

int cw_dial(const cw_dial_request *request, cw_call *out, cw_err *err) {
    memset(out, 0, sizeof *out);
    callwright_voice_call_dial_request_t r;
    memset(&r, 0, sizeof r);
    r.target = cw_borrow(request->target);
    r.from = cw_borrow_opt(request->from);
    r.headers = cw_header_list(request->headers);
    if (request->body) {
        r.body.is_some = true;
        r.body.val = cw_body_of(request->body);
    }
    r.credentials = cw_opt_credentials(request->username, request->password);
    r.timeout_ms = cw_opt_u32(request->timeout_ms);
    r.transport = cw_borrow_opt(request->transport);
    callwright_voice_call_own_call_t own;
    callwright_voice_call_dial_error_t e;
    if (!callwright_voice_call_dial(&r, &own, &e)) {
        switch (e.tag) {
        case CALLWRIGHT_VOICE_CALL_DIAL_ERROR_FAILED:
            cw_err_set(err, CW_ERR_DIAL_FAILED, e.val.failed, "failed with %u", (unsigned)e.val.failed);
            break;
        case CALLWRIGHT_VOICE_CALL_DIAL_ERROR_TIMEOUT:
            cw_err_set(err, CW_ERR_DIAL_TIMEOUT, 0, "timeout");
            break;
        case CALLWRIGHT_VOICE_CALL_DIAL_ERROR_INVALID_ARGUMENT:
            cw_err_set(err, CW_ERR_INVALID_ARGUMENT, 0, "invalid argument: %.*s", (int)e.val.invalid_argument.len,
                       (const char *)e.val.invalid_argument.ptr);
            break;
        default:
            cw_err_set(err, CW_ERR_OTHER, 0, "%.*s", (int)e.val.other.len, (const char *)e.val.other.ptr);
            break;
        }
        callwright_voice_call_dial_error_free(&e);
        return -1;
    }
    cw_call_from_own(out, own);
    return 0;
}

void cw_call_drop(cw_call *call) {
    if (call->owned) callwright_voice_call_call_drop_own(call->own);
    call->owned = false;
}

/* ================================================================ transfers */

void cw_refer_request_init(cw_refer_request *request, const char *target) {
    memset(request, 0, sizeof *request);
    request->target = target;
    request->timeout_ms = -1;
}

int cw_call_sip_refer(const cw_call *call, const cw_refer_request *request, cw_refer *out, cw_err *err) {
    memset(out, 0, sizeof *out);
    callwright_voice_call_refer_request_t r;
    memset(&r, 0, sizeof r);
    r.target = cw_borrow(request->target);
    r.referred_by = cw_borrow_opt(request->referred_by);
    r.headers = cw_header_list(request->headers);
    r.credentials = cw_opt_credentials(request->username, request->password);
    r.no_refer_sub = request->no_refer_sub;
    r.replaces = cw_borrow_opt(request->replaces);
    r.timeout_ms = cw_opt_u32(request->timeout_ms);
    callwright_voice_call_call_error_t e;
    if (!callwright_voice_call_method_call_sip_refer(call->handle, &r, &out->own, &e)) return cw_call_error(err, &e);
    return 0;
}

void cw_refer_next_event(const cw_refer *refer, callwright_voice_call_refer_event_t *out) {
    callwright_voice_call_method_refer_next_event(callwright_voice_call_borrow_refer(refer->own), out);
}

void cw_refer_drop(cw_refer *refer) {
    if (refer->own.__handle) callwright_voice_call_refer_drop_own(refer->own);
    refer->own.__handle = 0;
}

void cw_refer_follow(const cw_refer *refer, void (*on_notify)(uint16_t status, void *ctx), void *ctx,
                     cw_refer_report *out) {
    memset(out, 0, sizeof *out);
    size_t cap = 0;
    for (;;) {
        callwright_voice_call_refer_event_t ev;
        cw_refer_next_event(refer, &ev);
        switch (ev.tag) {
        case CALLWRIGHT_VOICE_CALL_REFER_EVENT_RESPONSE:
            out->has_refer_status = true;
            out->refer_status = ev.val.response.status;
            break;
        case CALLWRIGHT_VOICE_CALL_REFER_EVENT_NOTIFY:
            if (out->notify_count == cap) {
                cap = cap ? cap * 2 : 4;
                out->notify_statuses = cw_grow(out->notify_statuses, cap * sizeof *out->notify_statuses);
            }
            out->notify_statuses[out->notify_count++] = ev.val.notify;
            if (on_notify) on_notify(ev.val.notify, ctx);
            break;
        default: {
            const callwright_voice_call_refer_outcome_t *o = &ev.val.outcome;
            out->outcome = (cw_refer_outcome)o->tag;
            if (o->tag == CALLWRIGHT_VOICE_CALL_REFER_OUTCOME_SUCCESS) out->outcome_status = o->val.success;
            else if (o->tag == CALLWRIGHT_VOICE_CALL_REFER_OUTCOME_FAILED) out->outcome_status = o->val.failed;
            else if (o->tag == CALLWRIGHT_VOICE_CALL_REFER_OUTCOME_REJECTED) out->outcome_status = o->val.rejected;
            callwright_voice_call_refer_event_free(&ev);
            return;
        }
        }
        callwright_voice_call_refer_event_free(&ev);
    }
}

void cw_refer_report_free(cw_refer_report *report) {
    free(report->notify_statuses);
    memset(report, 0, sizeof *report);
}

bool cw_refer_report_final_notify_status(const cw_refer_report *report, uint16_t *out) {
    if (report->outcome != CW_REFER_SUCCESS && report->outcome != CW_REFER_FAILED) return false;
    for (size_t i = 0; i < report->notify_count; i++) {
        if (report->notify_statuses[i] == report->outcome_status) {
            *out = report->outcome_status;
            return true;
        }
    }
    return false;
}

bool cw_refer_report_succeeded(const cw_refer_report *report) { return report->outcome == CW_REFER_SUCCESS; }

const char *cw_refer_report_outcome_name(const cw_refer_report *report) {
    switch (report->outcome) {
    case CW_REFER_SUCCESS: return "success";
    case CW_REFER_FAILED: return "failed";
    case CW_REFER_REJECTED: return "rejected";
    case CW_REFER_TIMEOUT: return "timeout";
    case CW_REFER_AUTH_FAILED: return "auth-failed";
    case CW_REFER_CALL_ENDED: return "call-ended";
    }
    return "unknown";
}

void cw_refer_report_jambonz_action_fields(const cw_refer_report *report, cw_obj *out) {
    if (report->has_refer_status) cw_obj_set_uint(out, "refer_status", report->refer_status);
    uint16_t status;
    if (cw_refer_report_final_notify_status(report, &status)) cw_obj_set_uint(out, "final_referred_call_status", status);
}

const char *cw_refer_report_swml_result(const cw_refer_report *report) {
    return cw_refer_report_succeeded(report) ? "success" : "failed";
}

void cw_jambonz_call_fields(const cw_call_info *info, const char *call_status, cw_obj *out) {
    cw_obj_set_str(out, "call_sid", info->id);
    cw_obj_set_str(out, "call_id", info->sip_call_id);
    cw_obj_set_str(out, "direction", info->direction == CW_OUTBOUND ? "outbound" : "inbound");
    cw_obj_set_str(out, "from", info->from_user);
    cw_obj_set_str(out, "to", info->to_user);
    cw_obj_set_uint(out, "sip_status", 200);
    cw_obj_set_str(out, "call_status", call_status);
}

/* ================================================================ hooks */

void cw_hook_post(cw_hook *hook, const char *url) {
    memset(hook, 0, sizeof *hook);
    hook->url = cw_strdup0(url);
    hook->encoding = -1;
}

bool cw_hook_from_json(const cw_json *value, cw_hook *hook) {
    memset(hook, 0, sizeof *hook);
    hook->encoding = -1;
    if (!value) return false;
    if (value->type == CW_JSON_STRING) {
        cw_hook_post(hook, value->string);
        return true;
    }
    const char *url = cw_json_get_str(value, "url");
    if (!url) return false;
    hook->url = cw_strdup0(url);
    hook->method = cw_strdup0(cw_json_get_str(value, "method"));
    hook->username = cw_strdup0(cw_json_get_str(value, "username"));
    hook->password = cw_strdup0(cw_json_get_str(value, "password"));
    return true;
}

void cw_hook_free(cw_hook *hook) {
    free(hook->url);
    free(hook->method);
    free(hook->username);
    free(hook->password);
    memset(hook, 0, sizeof *hook);
    hook->encoding = -1;
}

static callwright_voice_hooks_hook_t cw_hook_of(const cw_hook *hook) {
    callwright_voice_hooks_hook_t h;
    memset(&h, 0, sizeof h);
    h.url = cw_borrow(hook->url);
    h.method = cw_borrow_opt(hook->method);
    h.username = cw_borrow_opt(hook->username);
    h.password = cw_borrow_opt(hook->password);
    if (hook->encoding >= 0) {
        h.encoding.is_some = true;
        h.encoding.val = (callwright_voice_hooks_body_encoding_t)hook->encoding;
    }
    return h;
}

int cw_hooks_send(const cw_hook *hook, const char *payload, uint16_t *status, char **body, cw_err *err) {
    callwright_voice_hooks_hook_t h = cw_hook_of(hook);
    call_flow_string_t p = cw_borrow(payload);
    callwright_voice_hooks_hook_response_t r;
    callwright_voice_hooks_hook_error_t e;
    if (body) *body = NULL;
    if (!callwright_voice_hooks_send(&h, &p, &r, &e)) return cw_hook_error(err, &e);
    if (status) *status = r.status;
    if (body) *body = cw_string_dup(&r.body);
    callwright_voice_hooks_hook_response_free(&r);
    return 0;
}

int cw_hooks_notify(const cw_hook *hook, const char *payload, cw_err *err) {
    callwright_voice_hooks_hook_t h = cw_hook_of(hook);
    call_flow_string_t p = cw_borrow(payload);
    callwright_voice_hooks_hook_error_t e;
    if (!callwright_voice_hooks_notify(&h, &p, &e)) return cw_hook_error(err, &e);
    return 0;
}

cw_json *cw_hooks_send_for_answer(const cw_hook *hook, const char *payload, const char *context) {
    uint16_t status = 0;
    char *body = NULL;
    cw_err err;
    if (cw_hooks_send(hook, payload, &status, &body, &err)) {
        cw_log(CW_WARN, "%s: hook %s failed: %s", context, hook->url, err.message);
        return NULL;
    }
    cw_json *answer = NULL;
    if (status < 200 || status >= 300) {
        cw_log(CW_WARN, "%s: hook %s answered %u", context, hook->url, (unsigned)status);
    } else {
        const char *p = body;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p) {
            answer = cw_json_parse(body, strlen(body));
            if (!answer) cw_log(CW_WARN, "%s: hook %s answered with invalid JSON", context, hook->url);
        }
    }
    free(body);
    return answer;
}

/* ================================================================ variables, log, clock, verbs */

char *cw_var_get(const char *name) {
    call_flow_string_t n = cw_borrow(name), v;
    if (!callwright_voice_variables_get(&n, &v)) return NULL;
    char *out = cw_string_dup(&v);
    call_flow_string_free(&v);
    return out;
}

void cw_var_set(const char *name, const char *value) {
    call_flow_string_t n = cw_borrow(name), v = cw_borrow(value);
    callwright_voice_variables_set(&n, &v);
}

void cw_var_remove(const char *name) {
    call_flow_string_t n = cw_borrow(name);
    callwright_voice_variables_remove(&n);
}

void cw_var_entries(call_flow_list_tuple2_string_string_t *out) { callwright_voice_variables_entries(out); }

void cw_log(cw_level level, const char *fmt, ...) {
    cw_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        cw_buf_reserve(&b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b.ptr, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b.len = (size_t)n;
    }
    call_flow_string_t m;
    m.ptr = (uint8_t *)(b.ptr ? b.ptr : "");
    m.len = b.len;
    callwright_voice_log_log((callwright_voice_log_level_t)level, &m);
    cw_buf_free(&b);
}

uint64_t cw_now_ms(void) { return callwright_voice_clock_now_ms(); }

void cw_sleep(uint32_t ms) { callwright_voice_clock_sleep(ms); }

int cw_run_verb(const cw_call *call, const char *name, const char *args, char **result, cw_err *err) {
    call_flow_string_t n = cw_borrow(name), a = cw_borrow(args), r;
    callwright_voice_dispatch_verb_error_t e;
    if (result) *result = NULL;
    if (!callwright_voice_dispatch_run(call->handle, &n, &a, &r, &e)) return cw_verb_error(err, &e);
    if (result) *result = cw_string_dup(&r);
    call_flow_string_free(&r);
    return 0;
}

int cw_check_verb(const char *name, const char *args, cw_err *err) {
    call_flow_string_t n = cw_borrow(name), a = cw_borrow(args);
    callwright_voice_dispatch_verb_error_t e;
    if (!callwright_voice_dispatch_check(&n, &a, &e)) return cw_verb_error(err, &e);
    return 0;
}

/* ================================================================ the export */

bool exports_callwright_voice_flow_handle(exports_callwright_voice_flow_own_call_t own, call_flow_string_t *config,
                                          call_flow_string_t *error) {
    cw_json *parsed = cw_json_parse((const char *)config->ptr, config->len);
    call_flow_string_free(config);
    cw_json null_value;
    memset(&null_value, 0, sizeof null_value); /* CW_JSON_NULL */
    cw_call call;
    call.own = own;
    call.handle = callwright_voice_call_borrow_call(own);
    call.owned = false;
    cw_err err;
    memset(&err, 0, sizeof err);
    int rc = cw_flow(&call, parsed ? parsed : &null_value, &err);
    cw_json_free(parsed);
    callwright_voice_call_call_drop_own(own);
    if (rc == 0) return true;
    call_flow_string_dup(error, err.message[0] ? err.message : "the flow failed");
    return false;
}

/* ================================================================ media */

/* Converts (and frees) a media-error. */
static int cw_media_error(cw_err *err, callwright_voice_media_media_error_t *e) {
    switch (e->tag) {
    case CALLWRIGHT_VOICE_MEDIA_MEDIA_ERROR_NO_MEDIA:
        cw_err_set(err, CW_ERR_NO_MEDIA, 0, "the call carries no media of the host's");
        break;
    case CALLWRIGHT_VOICE_MEDIA_MEDIA_ERROR_CALL_ENDED:
        cw_err_set(err, CW_ERR_CALL_ENDED, 0, "call ended");
        break;
    case CALLWRIGHT_VOICE_MEDIA_MEDIA_ERROR_BAD_SOURCE:
        cw_err_set(err, CW_ERR_BAD_SOURCE, 0, "cannot play: %.*s", (int)e->val.bad_source.len,
                   (const char *)e->val.bad_source.ptr);
        break;
    default:
        cw_err_set(err, CW_ERR_INVALID_ARGUMENT, 0, "invalid argument: %.*s", (int)e->val.invalid_argument.len,
                   (const char *)e->val.invalid_argument.ptr);
        break;
    }
    callwright_voice_media_media_error_free(e);
    return -1;
}

/* Plays one source; the playback handle is dropped (the playback goes on; cw_media_stop stops it). */
static int cw_media_play_source(const cw_call *call, callwright_voice_media_audio_source_t *source, bool barge_in,
                                cw_err *err) {
    callwright_voice_media_list_audio_source_t sources = {source, 1};
    callwright_voice_media_play_options_t options;
    memset(&options, 0, sizeof options);
    options.barge_in = barge_in;
    callwright_voice_media_own_playback_t playback;
    callwright_voice_media_media_error_t e;
    if (!callwright_voice_media_play(call->handle, &sources, &options, &playback, &e)) return cw_media_error(err, &e);
    callwright_voice_media_playback_drop_own(playback);
    return 0;
}

int cw_media_say(const cw_call *call, const char *text, bool barge_in, cw_err *err) {
    callwright_voice_media_audio_source_t source;
    memset(&source, 0, sizeof source);
    source.tag = CALLWRIGHT_VOICE_MEDIA_AUDIO_SOURCE_SAY;
    source.val.say.text = cw_borrow(text);
    return cw_media_play_source(call, &source, barge_in, err);
}

int cw_media_play(const cw_call *call, const char *name_or_url, bool barge_in, cw_err *err) {
    callwright_voice_media_audio_source_t source;
    memset(&source, 0, sizeof source);
    bool url = name_or_url && strstr(name_or_url, "://") != NULL;
    source.tag = url ? CALLWRIGHT_VOICE_MEDIA_AUDIO_SOURCE_URL : CALLWRIGHT_VOICE_MEDIA_AUDIO_SOURCE_FILE;
    if (url) source.val.url = cw_borrow(name_or_url);
    else source.val.file = cw_borrow(name_or_url);
    return cw_media_play_source(call, &source, barge_in, err);
}

void cw_media_stop(const cw_call *call) { callwright_voice_media_stop_playback(call->handle); }

int cw_media_send_digits(const cw_call *call, const char *digits, cw_err *err) {
    call_flow_string_t text = cw_borrow(digits);
    callwright_voice_media_media_error_t e;
    if (!callwright_voice_media_send_digits(call->handle, &text, NULL, &e)) return cw_media_error(err, &e);
    return 0;
}

int cw_media_wait(const cw_call *call, int64_t timeout_ms, cw_media_update *out) {
    static const char *const sources[] = {"rtp-event", "sip-info", "in-band"};
    static const char *const playback_ends[] = {"completed", "stopped", "barged-in"};
    static const char *const recording_ends[] = {"max-length", "silence", "no-input", "key", "stopped"};
    memset(out, 0, sizeof *out);
    uint32_t t = timeout_ms > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)(timeout_ms < 0 ? 0 : timeout_ms);
    callwright_voice_media_borrow_call_t handle = call->handle;
    callwright_voice_media_list_borrow_call_t calls = {&handle, 1};
    callwright_voice_media_tuple2_u32_media_update_t got;
    if (!callwright_voice_media_wait(&calls, timeout_ms < 0 ? NULL : &t, &got)) return 0;
    callwright_voice_media_media_update_t *update = &got.f1;
    switch (update->tag) {
    case CALLWRIGHT_VOICE_MEDIA_MEDIA_UPDATE_DIGIT: {
        callwright_voice_media_digit_t *digit = &update->val.digit;
        out->kind = CW_MEDIA_DIGIT;
        out->key[0] = digit->key.len ? (char)digit->key.ptr[0] : '?';
        out->source = sources[digit->source < 3 ? digit->source : 0];
        out->duration_ms = digit->duration_ms;
        break;
    }
    case CALLWRIGHT_VOICE_MEDIA_MEDIA_UPDATE_PLAYBACK_ENDED:
        out->kind = CW_MEDIA_PLAYBACK_ENDED;
        out->playback_id = update->val.playback_ended.id;
        out->reason = playback_ends[update->val.playback_ended.reason < 3 ? update->val.playback_ended.reason : 0];
        out->duration_ms = update->val.playback_ended.played_ms;
        break;
    case CALLWRIGHT_VOICE_MEDIA_MEDIA_UPDATE_DIGITS_SENT:
        out->kind = CW_MEDIA_DIGITS_SENT;
        break;
    case CALLWRIGHT_VOICE_MEDIA_MEDIA_UPDATE_RECORDING_ENDED:
        out->kind = CW_MEDIA_RECORDING_ENDED;
        out->reason = recording_ends[update->val.recording_ended.reason.tag < 5 ? update->val.recording_ended.reason.tag : 4];
        out->duration_ms = update->val.recording_ended.duration_ms;
        break;
    default: {
        callwright_voice_call_call_update_t *sip = &update->val.call;
        out->kind = CW_MEDIA_OTHER;
        if (sip->tag == CALLWRIGHT_VOICE_CALL_CALL_UPDATE_EVENT) {
            if (sip->val.event.tag == CALLWRIGHT_VOICE_CALL_CALL_EVENT_ENDED) out->kind = CW_MEDIA_CALL_ENDED;
            if (sip->val.event.tag == CALLWRIGHT_VOICE_CALL_CALL_EVENT_REQUEST) {
                out->kind = CW_MEDIA_REQUEST;
                out->request_id = sip->val.event.val.request.id;
            }
        }
        break;
    }
    }
    callwright_voice_media_tuple2_u32_media_update_free(&got);
    return 1;
}
