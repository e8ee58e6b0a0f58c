// sms-reply in C: the text an SMS applet sends back, from the flow's config.
//
// The same plugin as the Rust `plugins/sms-reply`, text for text and reason for reason. `reply`
// is the text, where `{caller}` becomes the caller's number (`CallFrom`, else `From`, as sent)
// and `{digits}` the keys pressed; what the request lacks becomes nothing. Without a `reply` (or
// with an empty one) the answer is a default text. The placeholders are replaced in one pass, so
// a caller's number that reads `{digits}` is kept as it is. Built against the world `texter`: it
// exports `sms`, whose text is answered as `text/plain`. `texter.h` is generated from the WIT
// contract by `wit-bindgen c --world texter`.

#include <stdlib.h>
#include <string.h>

#include "texter.h"

#define DEFAULT_REPLY "Thank you for your message. We will get back to you soon."

// A growable byte string for building the answer's strings.
typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} buf_t;

static void buf_add(buf_t *b, const uint8_t *bytes, size_t len) {
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2 + 1;
        uint8_t *grown = realloc(b->ptr, b->cap);
        if (grown == NULL) {
            abort();
        }
        b->ptr = grown;
    }
    if (len > 0) {
        memcpy(b->ptr + b->len, bytes, len);
    }
    b->len += len;
}

static void buf_str(buf_t *b, const char *s) { buf_add(b, (const uint8_t *)s, strlen(s)); }

// Appends `n` in decimal (without stdio: snprintf would pull WASI imports into the component).
static void buf_u32(buf_t *b, uint32_t n) {
    uint8_t digits[10];
    size_t at = sizeof digits;
    do {
        digits[--at] = (uint8_t)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    buf_add(b, digits + at, sizeof digits - at);
}

// Hands the bytes over as a WIT string (malloc'd, never NULL); the buffer is empty afterwards.
static texter_string_t buf_take(buf_t *b) {
    if (b->ptr == NULL) {
        buf_add(b, (const uint8_t *)"", 0);
    }
    texter_string_t s = {.ptr = b->ptr, .len = b->len};
    *b = (buf_t){0};
    return s;
}

// Whether the `len` bytes at `s` start with `prefix`.
static bool starts_with(const uint8_t *s, size_t len, const char *prefix) {
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

// The bytes of an optional string: none is empty.
static void buf_option(buf_t *b, const texter_option_string_t *value) {
    if (value->is_some) {
        buf_add(b, value->val.ptr, value->val.len);
    }
}

// `template` with each `{caller}` and `{digits}` replaced, in one pass, into `out`; answers how
// many were.
static uint32_t fill(const texter_string_t *template, const texter_option_string_t *caller,
                     const texter_option_string_t *digits, buf_t *out) {
    uint32_t filled = 0;
    size_t at = 0;
    while (at < template->len) {
        const uint8_t *here = template->ptr + at;
        size_t left = template->len - at;
        if (starts_with(here, left, "{caller}")) {
            buf_option(out, caller);
            filled++;
            at += strlen("{caller}");
        } else if (starts_with(here, left, "{digits}")) {
            buf_option(out, digits);
            filled++;
            at += strlen("{digits}");
        } else {
            buf_add(out, here, 1);
            at++;
        }
    }
    return filled;
}

// The world's `sms` export. The call is ours to free; the reply's strings are freed by the
// generated glue after the host has read them, so they must come from malloc.
void exports_texter_sms(texter_call_details_t *call, texter_text_reply_t *ret) {
    texter_string_t key;
    texter_string_t template = {0};
    texter_string_set(&key, "reply");
    bool set = passthru_plugin_host_config(&key, &template);
    buf_t text = {0};
    buf_t reason = {0};
    if (!set || template.len == 0) {
        buf_str(&text, DEFAULT_REPLY);
        buf_str(&reason, "no reply configured: the default text");
    } else {
        const texter_option_string_t *caller =
            call->call_from.is_some ? &call->call_from : &call->from;
        uint32_t filled = fill(&template, caller, &call->digits, &text);
        buf_str(&reason, "the flow's reply (placeholders filled: ");
        buf_u32(&reason, filled);
        buf_str(&reason, ")");
    }
    if (set) {
        texter_string_free(&template);
    }
    ret->text = buf_take(&text);
    ret->reason.is_some = true;
    ret->reason.val = buf_take(&reason);
    texter_call_details_free(call);
}
