// agent-dialer in C: tells a Connect applet whom to dial, from the flow's config.
//
// The same plugin as the Rust `plugins/agent-dialer`, plan for plan, reason for reason and log
// line for log line. `team = "+919800000001, +919800000002"` are the support team's numbers,
// dialled in order. A caller listed in `vip_numbers` rings up to `vip_parallel` of them at once
// (default 3, at most 5) and the agent who picks up hears the `vip_playback` text, if set.
// `caller_id` is the ExoPhone the agent sees, `record = "true"` records the call (both sides on
// their own channel), and `ring_seconds` bounds how long each number rings. The caller is
// Exotel's `CallFrom`, else the older `From`. Built against the world `connector`: it exports
// `connect`, whose plan the host answers as Exotel's Connect JSON. `connector.h` is generated from
// the WIT contract by `wit-bindgen c --world connector`.

#include <stdlib.h>
#include <string.h>

#include "connector.h"

// A growable byte string for building the plan's strings.
typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} buf_t;

static void *grow(void *ptr, size_t size) {
    void *grown = realloc(ptr, size);
    if (grown == NULL) {
        abort();
    }
    return grown;
}

static void buf_add(buf_t *b, const uint8_t *bytes, size_t len) {
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2;
        b->ptr = grow(b->ptr, b->cap);
    }
    memcpy(b->ptr + b->len, bytes, len);
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

// Hands the bytes over as a WIT string; the buffer is empty afterwards.
static connector_string_t buf_take(buf_t *b) {
    connector_string_t s = {.ptr = b->ptr, .len = b->len};
    *b = (buf_t){0};
    return s;
}

// A piece of a string: `len` bytes at `ptr`.
typedef struct {
    const uint8_t *ptr;
    size_t len;
} slice_t;

static bool slice_is(slice_t s, const char *text) {
    return s.len == strlen(text) && memcmp(s.ptr, text, s.len) == 0;
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
static bool setting(const char *key, connector_string_t *value) {
    connector_string_t name;
    connector_string_set(&name, key);
    *value = (connector_string_t){0};
    return passthru_plugin_host_config(&name, value);
}

// Steps through the comma-separated entries of `*rest`, trimmed, skipping empty ones (the SDK's
// `list`): true with the next entry in `*entry`, false when there are no more.
static bool next_entry(slice_t *rest, slice_t *entry) {
    while (rest->ptr != NULL) {
        const uint8_t *comma = memchr(rest->ptr, ',', rest->len);
        slice_t piece = {rest->ptr, comma != NULL ? (size_t)(comma - rest->ptr) : rest->len};
        if (comma != NULL) {
            rest->len -= piece.len + 1;
            rest->ptr = comma + 1;
        } else {
            *rest = (slice_t){0};
        }
        piece = trim(piece);
        if (piece.len > 0) {
            *entry = piece;
            return true;
        }
    }
    return false;
}

// Where the entries of a string start: a NULL pointer means none, so an empty string gets a
// non-NULL one.
static slice_t entries_of(const connector_string_t *s) {
    static const uint8_t empty[1] = {0};
    return (slice_t){s->ptr != NULL ? s->ptr : empty, s->len};
}

// The numbers to dial: the entries of `team`, each a malloc'd copy.
static connector_list_string_t team_numbers(const connector_string_t *team) {
    connector_list_string_t list = {0};
    size_t cap = 0;
    slice_t rest = entries_of(team);
    slice_t entry;
    while (next_entry(&rest, &entry)) {
        if (list.len == cap) {
            cap = cap == 0 ? 4 : cap * 2;
            list.ptr = grow(list.ptr, cap * sizeof(connector_string_t));
        }
        buf_t copy = {0};
        buf_add(&copy, entry.ptr, entry.len);
        list.ptr[list.len++] = buf_take(&copy);
    }
    return list;
}

static bool listed(const connector_string_t *list, slice_t caller) {
    slice_t rest = entries_of(list);
    slice_t entry;
    while (next_entry(&rest, &entry)) {
        if (entry.len == caller.len && memcmp(entry.ptr, caller.ptr, caller.len) == 0) {
            return true;
        }
    }
    return false;
}

// The config value for `key`, trimmed, read as Rust reads a `u32`: an optional `+` and ASCII
// digits, at most 2^32 - 1. False when unset or anything else.
static bool setting_number(const char *key, uint32_t *out) {
    connector_string_t value;
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
    connector_string_free(&value);
    if (ok) {
        *out = (uint32_t)n;
    }
    return ok;
}

// Whether the config value for `key`, trimmed, is `true`.
static bool setting_true(const char *key) {
    connector_string_t value;
    if (!setting(key, &value)) {
        return false;
    }
    bool yes = slice_is(trim((slice_t){value.ptr, value.len}), "true");
    connector_string_free(&value);
    return yes;
}

// Fills `plan` for a caller (empty when there is none): the team in order, or several at once
// for a VIP.
static void plan_for(slice_t caller, connector_connect_plan_t *plan) {
    *plan = (connector_connect_plan_t){0};
    connector_string_t text;
    if (setting("team", &text)) {
        plan->numbers = team_numbers(&text);
        connector_string_free(&text);
    }
    plan->outgoing_phone_number.is_some = setting("caller_id", &plan->outgoing_phone_number.val);
    plan->record_call = setting_true("record");
    if (plan->record_call) {
        plan->recording_channels.is_some = true;
        plan->recording_channels.val = PASSTHRU_PLUGIN_TYPES_RECORDING_CHANNELS_DUAL;
    }
    plan->max_ringing_duration.is_some =
        setting_number("ring_seconds", &plan->max_ringing_duration.val);

    buf_t reason = {0};
    bool vip = false;
    if (caller.len > 0 && setting("vip_numbers", &text)) {
        vip = listed(&text, caller);
        connector_string_free(&text);
    }
    if (!vip) {
        if (caller.len == 0) {
            buf_str(&reason, "no caller number");
        } else {
            buf_str(&reason, "caller ");
            buf_add(&reason, caller.ptr, caller.len);
        }
        buf_str(&reason, ": the team in order");
    } else {
        uint32_t parallel = 3;
        setting_number("vip_parallel", &parallel);
        parallel = parallel < 1 ? 1 : parallel > 5 ? 5 : parallel;
        plan->parallel_attempts.is_some = true;
        plan->parallel_attempts.val = parallel;
        if (setting("vip_playback", &text)) {
            plan->start_call_playback.is_some = true;
            plan->start_call_playback.val.to = PASSTHRU_PLUGIN_TYPES_PLAYBACK_TO_CALLEE;
            plan->start_call_playback.val.media.tag = PASSTHRU_PLUGIN_TYPES_MEDIA_TEXT;
            plan->start_call_playback.val.media.val.text = text;
        }
        buf_str(&reason, "caller ");
        buf_add(&reason, caller.ptr, caller.len);
        buf_str(&reason, " is a VIP: ");
        buf_u32(&reason, parallel);
        buf_str(&reason, " at once");
    }
    plan->reason.is_some = true;
    plan->reason.val = buf_take(&reason);
}

// The world's `connect` export. The call is ours to free; the plan's strings and list are freed
// by the generated glue after the host has read them, so they must come from malloc.
void exports_connector_connect(connector_call_details_t *call, connector_connect_plan_t *ret) {
    const connector_option_string_t *from =
        call->call_from.is_some ? &call->call_from : &call->from;
    slice_t caller = {0};
    if (from->is_some) {
        caller = trim((slice_t){from->val.ptr, from->val.len});
    }
    plan_for(caller, ret);
    passthru_plugin_host_log(PASSTHRU_PLUGIN_HOST_LEVEL_INFO, &ret->reason.val);
    connector_call_details_free(call);
}
