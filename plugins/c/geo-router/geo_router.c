// geo-router in C: sends each call to a Switchcase case chosen by the caller's number prefix.
//
// The same plugin as the Rust `plugins/geo-router`, answer for answer, reason for reason and log
// line for log line. The flow's config maps prefixes to cases, `routes = "+9180:south, +91:india"`:
// the longest prefix of the caller's number wins, and a caller no prefix matches goes to the case
// named by `default_case` (or, without it, takes the failure branch with no case). The caller is
// Exotel's `CallFrom`, else the older `From`. Built against the world `switcher`: it exports
// `select`, whose answer is `200` with the body `{"select":"CASE"}`. `switcher.h` is generated
// from the WIT contract by `wit-bindgen c --world switcher`.

#include <stdlib.h>
#include <string.h>

#include "switcher.h"

#define ROUTES_KEY "routes"
#define DEFAULT_KEY "default_case"

// A growable byte string for building reasons and log lines.
typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} buf_t;

static void buf_add(buf_t *b, const uint8_t *bytes, size_t len) {
    if (b->len + len > b->cap) {
        size_t cap = (b->len + len) * 2;
        uint8_t *grown = realloc(b->ptr, cap);
        if (grown == NULL) {
            abort();
        }
        b->ptr = grown;
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, bytes, len);
    b->len += len;
}

static void buf_str(buf_t *b, const char *s) { buf_add(b, (const uint8_t *)s, strlen(s)); }

// Hands the bytes over as a WIT string; the buffer is empty afterwards.
static switcher_string_t buf_take(buf_t *b) {
    switcher_string_t s = {.ptr = b->ptr, .len = b->len};
    *b = (buf_t){0};
    return s;
}

// A malloc'd copy of `len` bytes at `bytes`, as a WIT string (the glue frees what we answer).
static switcher_string_t copy(const uint8_t *bytes, size_t len) {
    buf_t b = {0};
    buf_add(&b, bytes, len);
    return buf_take(&b);
}

// The byte length of the whitespace character that `s` (of `n` bytes) starts with, or 0.
// Whitespace is what Rust's `str::trim` removes: Unicode's White_Space, in UTF-8.
static size_t space_at_start(const uint8_t *s, size_t n) {
    if (n >= 1 && (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r'))) {
        return 1;
    }
    if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) { // U+0085, U+00A0
        return 2;
    }
    if (n >= 3) {
        unsigned c = (unsigned)s[0] << 16 | (unsigned)s[1] << 8 | s[2];
        if (c == 0xe19a80                        // U+1680
            || (c >= 0xe28080 && c <= 0xe2808a)  // U+2000..U+200A
            || c == 0xe280a8 || c == 0xe280a9    // U+2028, U+2029
            || c == 0xe280af || c == 0xe2819f    // U+202F, U+205F
            || c == 0xe38080) {                  // U+3000
            return 3;
        }
    }
    return 0;
}

// The byte length of the whitespace character that `s` (of `n` bytes, valid UTF-8) ends with,
// or 0.
static size_t space_at_end(const uint8_t *s, size_t n) {
    for (size_t width = 1; width <= 3 && width <= n; width++) {
        if (space_at_start(s + n - width, width) == width) {
            return width;
        }
    }
    return 0;
}

// Narrows [*start, *start + *len) to its text without surrounding whitespace.
static void trim(const uint8_t **start, size_t *len) {
    size_t w;
    while ((w = space_at_start(*start, *len)) > 0) {
        *start += w;
        *len -= w;
    }
    while ((w = space_at_end(*start, *len)) > 0) {
        *len -= w;
    }
}

// A piece of a config value: `len` bytes at `ptr`.
typedef struct {
    const uint8_t *ptr;
    size_t len;
} slice_t;

// The longest prefix in `routes` (`prefix:case` entries, comma-separated) that starts `caller`,
// and its case. Of equal prefixes the last wins, as with Rust's `max_by_key`. False when none.
static bool route(const switcher_string_t *routes, slice_t caller, slice_t *prefix,
                  slice_t *kase) {
    bool found = false;
    if (routes->len == 0) {
        return false;
    }
    const uint8_t *at = routes->ptr;
    const uint8_t *end = routes->ptr + routes->len;
    for (;;) {
        const uint8_t *comma = memchr(at, ',', (size_t)(end - at));
        const uint8_t *stop = comma != NULL ? comma : end;
        const uint8_t *colon = memchr(at, ':', (size_t)(stop - at));
        if (colon != NULL) {
            slice_t p = {at, (size_t)(colon - at)};
            slice_t k = {colon + 1, (size_t)(stop - colon - 1)};
            trim(&p.ptr, &p.len);
            trim(&k.ptr, &k.len);
            if (p.len > 0 && k.len > 0 && p.len <= caller.len &&
                memcmp(caller.ptr, p.ptr, p.len) == 0 && (!found || p.len >= prefix->len)) {
                *prefix = p;
                *kase = k;
                found = true;
            }
        }
        if (comma == NULL) {
            return found;
        }
        at = comma + 1;
    }
}

// The case for callers no prefix matches, or the failure branch without a case. Takes `why`.
static void fallback(switcher_selection_t *ret, buf_t *why) {
    switcher_string_t key;
    switcher_string_t kase;
    switcher_string_set(&key, DEFAULT_KEY);
    if (passthru_plugin_host_config(&key, &kase)) {
        buf_str(why, ": " DEFAULT_KEY);
        ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_SUCCESS;
        ret->case_.is_some = true;
        ret->case_.val = kase;
    } else {
        ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_FAILURE;
        ret->case_.is_some = false;
    }
    ret->reason.is_some = true;
    ret->reason.val = buf_take(why);
}

// The world's `select` export. The call is ours to free; the selection's strings are freed by the
// generated glue after the host has read them, so they must come from malloc.
void exports_switcher_select(switcher_call_details_t *call, switcher_selection_t *ret) {
    buf_t b = {0};
    const switcher_option_string_t *from = call->call_from.is_some ? &call->call_from : &call->from;
    if (!from->is_some) {
        buf_str(&b, "no caller number (neither CallFrom nor From)");
        fallback(ret, &b);
        switcher_call_details_free(call);
        return;
    }
    slice_t caller = {from->val.ptr, from->val.len};
    trim(&caller.ptr, &caller.len);

    switcher_string_t key;
    switcher_string_t routes = {0};
    switcher_string_set(&key, ROUTES_KEY);
    bool configured = passthru_plugin_host_config(&key, &routes);
    slice_t prefix = {0};
    slice_t kase = {0};
    buf_str(&b, "caller ");
    buf_add(&b, caller.ptr, caller.len);
    if (!route(&routes, caller, &prefix, &kase)) {
        buf_str(&b, " matches no prefix");
        fallback(ret, &b);
    } else {
        buf_str(&b, " matches ");
        buf_add(&b, prefix.ptr, prefix.len);
        ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_SUCCESS;
        ret->case_.is_some = true;
        ret->case_.val = copy(kase.ptr, kase.len);
        ret->reason.is_some = true;
        ret->reason.val = buf_take(&b);
        passthru_plugin_host_log(PASSTHRU_PLUGIN_HOST_LEVEL_INFO, &ret->reason.val);
    }
    if (configured) {
        switcher_string_free(&routes);
    }
    switcher_call_details_free(call);
}
