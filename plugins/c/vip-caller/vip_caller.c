// vip-caller in C: success when the caller is on the flow's VIP list.
//
// The same plugin as the Rust `plugins/vip-caller`, decision for decision, reason for reason and
// log line for log line. The list is the flow's config value `vip_numbers`, numbers separated by
// commas; spaces around an entry and empty entries are ignored. The caller is Exotel's `CallFrom`,
// else the older `From`. A flow without `vip_numbers` logs a warning and answers `failure`.
// It is a `lean-decider`: it reads the caller through the `call` interface, and nothing else of
// the call. `lean_decider.h` is generated from the WIT contract by
// `wit-bindgen c --world lean-decider`.

#include <stdlib.h>
#include <string.h>

#include "lean_decider.h"

#define VIP_NUMBERS_KEY "vip_numbers"

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

static void buf_uint(buf_t *b, size_t n) {
    char digits[24];
    size_t at = sizeof digits;
    do {
        digits[--at] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    buf_add(b, (const uint8_t *)digits + at, sizeof digits - at);
}

// Hands the bytes over as a WIT string; the buffer is empty afterwards.
static lean_decider_string_t buf_take(buf_t *b) {
    lean_decider_string_t s = {.ptr = b->ptr, .len = b->len};
    *b = (buf_t){0};
    return s;
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

// Whether the comma-separated `list` has an entry equal to `caller` once both are trimmed, and
// how many non-empty entries it has.
static bool find_vip(const lean_decider_string_t *list, const uint8_t *caller, size_t caller_len,
                     size_t *count) {
    bool found = false;
    const uint8_t *at = list->ptr;
    const uint8_t *end = list->ptr + list->len;
    *count = 0;
    for (;;) {
        const uint8_t *comma = memchr(at, ',', (size_t)(end - at));
        const uint8_t *entry = at;
        size_t len = (size_t)((comma != NULL ? comma : end) - at);
        trim(&entry, &len);
        if (len > 0) {
            *count += 1;
            found = found || (len == caller_len && memcmp(entry, caller, len) == 0);
        }
        if (comma == NULL) {
            return found;
        }
        at = comma + 1;
    }
}

static void log_line(passthru_plugin_host_level_t level, lean_decider_string_t *message) {
    passthru_plugin_host_log(level, message);
}

static void decide_failure(lean_decider_decision_t *ret, lean_decider_string_t reason) {
    ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_FAILURE;
    ret->reason.is_some = true;
    ret->reason.val = reason;
}

// Reads the caller: Exotel's `CallFrom`, else the older `From`. `false` when neither was sent
// (and what the bindings wrote to `caller` is then not a string); otherwise the number is ours to
// free.
static bool read_caller(lean_decider_string_t *caller) {
    return passthru_plugin_call_call_from(caller) || passthru_plugin_call_from(caller);
}

// The world's `decide-lean` export. The decision's reason is freed by the generated glue after
// the host has read it, so it must come from malloc.
void exports_lean_decider_decide_lean(lean_decider_decision_t *ret) {
    buf_t b = {0};
    lean_decider_string_t key;
    lean_decider_string_t list;
    lean_decider_string_set(&key, VIP_NUMBERS_KEY);
    if (!passthru_plugin_host_config(&key, &list)) {
        lean_decider_string_t line;
        buf_str(&b, VIP_NUMBERS_KEY " is not configured: every caller takes the failure branch");
        line = buf_take(&b);
        log_line(PASSTHRU_PLUGIN_HOST_LEVEL_WARN, &line);
        lean_decider_string_free(&line);
        buf_str(&b, VIP_NUMBERS_KEY " is not configured");
        decide_failure(ret, buf_take(&b));
        return;
    }

    lean_decider_string_t from;
    if (!read_caller(&from)) {
        buf_str(&b, "no caller number (neither CallFrom nor From)");
        decide_failure(ret, buf_take(&b));
        log_line(PASSTHRU_PLUGIN_HOST_LEVEL_INFO, &ret->reason.val);
        lean_decider_string_free(&list);
        return;
    }
    const uint8_t *caller = from.ptr;
    size_t caller_len = from.len;
    trim(&caller, &caller_len);

    size_t count;
    bool vip = find_vip(&list, caller, caller_len, &count);
    buf_str(&b, "caller ");
    buf_add(&b, caller, caller_len);
    if (vip) {
        buf_str(&b, " is a VIP");
    } else {
        buf_str(&b, " is not among the ");
        buf_uint(&b, count);
        buf_str(&b, " VIP numbers");
    }
    ret->branch = vip ? PASSTHRU_PLUGIN_TYPES_BRANCH_SUCCESS : PASSTHRU_PLUGIN_TYPES_BRANCH_FAILURE;
    ret->reason.is_some = true;
    ret->reason.val = buf_take(&b);
    log_line(PASSTHRU_PLUGIN_HOST_LEVEL_INFO, &ret->reason.val);
    lean_decider_string_free(&list);
    lean_decider_string_free(&from);
}
