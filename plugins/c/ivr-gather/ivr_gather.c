// ivr-gather in C: what a Gather applet asks, from the flow's config.
//
// The same plugin as the Rust `plugins/ivr-gather`, plan for plan and reason for reason. The
// prompt is the audio at `prompt_url`, else the text `prompt`, else a default text (an empty
// value counts as unset). `max_digits` (default 1), `timeout` in seconds (default 5) and `repeat`
// (how many times the menu is repeated; left to Exotel when unset) are whole numbers as Rust
// reads a `u32`, trimmed; a value that is not one is the default. `finish_key` is the key that
// ends the input (default `#`); set empty, no key does. Built against the world `gatherer`: it
// exports `gather`, whose plan the host answers as Exotel's Gather JSON. `gatherer.h` is
// generated from the WIT contract by `wit-bindgen c --world gatherer`.

#include <stdlib.h>
#include <string.h>

#include "gatherer.h"

#define DEFAULT_PROMPT "Please enter your choice, then press the hash key."
#define DEFAULT_MAX_DIGITS 1
#define DEFAULT_FINISH_KEY "#"
#define DEFAULT_TIMEOUT 5

// A malloc'd copy of `s`, as a WIT string (the glue frees what we answer).
static gatherer_string_t copy(const char *s) {
    size_t len = strlen(s);
    uint8_t *ptr = malloc(len > 0 ? len : 1);
    if (ptr == NULL) {
        abort();
    }
    memcpy(ptr, s, len);
    return (gatherer_string_t){.ptr = ptr, .len = len};
}

// `a` followed by `b`, malloc'd; `a` is freed.
static gatherer_string_t append(gatherer_string_t a, const uint8_t *b, size_t len) {
    uint8_t *grown = realloc(a.ptr, a.len + len + 1);
    if (grown == NULL) {
        abort();
    }
    memcpy(grown + a.len, b, len);
    return (gatherer_string_t){.ptr = grown, .len = a.len + len};
}

// A piece of a string: `len` bytes at `ptr`.
typedef struct {
    const uint8_t *ptr;
    size_t len;
} slice_t;

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

// `s` without surrounding whitespace.
static slice_t trim(slice_t s) {
    size_t w;
    while ((w = space_at_start(s.ptr, s.len)) > 0) {
        s.ptr += w;
        s.len -= w;
    }
    while ((w = space_at_end(s.ptr, s.len)) > 0) {
        s.len -= w;
    }
    return s;
}

// The flow's config value for `key`: false when the flow does not set it. What is set is ours to
// free (or to hand over in the plan).
static bool setting(const char *key, gatherer_string_t *value) {
    gatherer_string_t name;
    gatherer_string_set(&name, key);
    *value = (gatherer_string_t){0};
    return passthru_plugin_host_config(&name, value);
}

// A config value that is set and not empty, in `*value` (ours to hand over); false otherwise.
static bool setting_not_empty(const char *key, gatherer_string_t *value) {
    if (!setting(key, value)) {
        return false;
    }
    if (value->len == 0) {
        gatherer_string_free(value);
        return false;
    }
    return true;
}

// The config value for `key`, trimmed, read as Rust reads a `u32`: an optional `+` and ASCII
// digits, at most 2^32 - 1. False when unset or anything else.
static bool setting_number(const char *key, uint32_t *out) {
    gatherer_string_t value;
    if (!setting(key, &value)) {
        return false;
    }
    slice_t s = trim((slice_t){value.ptr, value.len});
    if (s.len > 0 && s.ptr[0] == '+') {
        s.ptr++;
        s.len--;
    }
    bool ok = s.len > 0;
    uint64_t n = 0;
    for (size_t i = 0; ok && i < s.len; i++) {
        ok = s.ptr[i] >= '0' && s.ptr[i] <= '9';
        n = n * 10 + (uint64_t)(s.ptr[i] - '0');
        ok = ok && n <= UINT32_MAX;
    }
    gatherer_string_free(&value);
    if (ok) {
        *out = (uint32_t)n;
    }
    return ok;
}

// Appends `n` in decimal (without stdio: snprintf would pull WASI imports into the component).
static gatherer_string_t append_u32(gatherer_string_t s, uint32_t n) {
    uint8_t digits[10];
    size_t at = sizeof digits;
    do {
        digits[--at] = (uint8_t)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    return append(s, digits + at, sizeof digits - at);
}

// The world's `gather` export. The call is ours to free; the plan's strings are freed by the
// generated glue after the host has read them, so they must come from malloc.
void exports_gatherer_gather(gatherer_call_details_t *call, gatherer_gather_plan_t *ret) {
    *ret = (gatherer_gather_plan_t){0};
    gatherer_string_t text;
    const char *kind;
    if (setting_not_empty("prompt_url", &text)) {
        ret->prompt.tag = PASSTHRU_PLUGIN_TYPES_MEDIA_AUDIO_URL;
        ret->prompt.val.audio_url = text;
        kind = "audio";
    } else if (setting_not_empty("prompt", &text)) {
        ret->prompt.tag = PASSTHRU_PLUGIN_TYPES_MEDIA_TEXT;
        ret->prompt.val.text = text;
        kind = "text";
    } else {
        ret->prompt.tag = PASSTHRU_PLUGIN_TYPES_MEDIA_TEXT;
        ret->prompt.val.text = copy(DEFAULT_PROMPT);
        kind = "default";
    }
    uint32_t max_digits = DEFAULT_MAX_DIGITS;
    setting_number("max_digits", &max_digits);
    ret->max_input_digits.is_some = true;
    ret->max_input_digits.val = max_digits;
    if (!setting("finish_key", &ret->finish_on_key.val)) {
        ret->finish_on_key.is_some = true;
        ret->finish_on_key.val = copy(DEFAULT_FINISH_KEY);
    } else if (ret->finish_on_key.val.len == 0) {
        gatherer_string_free(&ret->finish_on_key.val);
        ret->finish_on_key.is_some = false;
    } else {
        ret->finish_on_key.is_some = true;
    }
    ret->input_timeout.is_some = true;
    ret->input_timeout.val = DEFAULT_TIMEOUT;
    setting_number("timeout", &ret->input_timeout.val);
    ret->repeat_menu.is_some = setting_number("repeat", &ret->repeat_menu.val);

    gatherer_string_t reason = copy(kind);
    const char *middle = " prompt, max_digits ";
    reason = append(reason, (const uint8_t *)middle, strlen(middle));
    ret->reason.is_some = true;
    ret->reason.val = append_u32(reason, max_digits);
    gatherer_call_details_free(call);
}
