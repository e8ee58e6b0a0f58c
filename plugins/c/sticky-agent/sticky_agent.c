// sticky-agent in C: sends a repeat caller back to the agent they spoke to last.
//
// The same plugin as the Rust `plugins/sticky-agent`, decision for decision, reason for reason and
// log line for log line. Before a Connect applet it looks the caller up in the key-value store and
// answers `success` when an agent is remembered, `failure` otherwise. After a Connect applet whose
// conversation completed (`DialCallStatus=completed` with a `DialWhomNumber`) it remembers
// caller -> agent for 24 hours and answers `success`.
//
// The store is `agents` unless the flow's config value `store` names another; the flow must grant
// it (`kv_stores`). A store error is logged as a warning and answered `failure`. `decider.h` is
// generated from the WIT contract by `wit-bindgen c`.

#include <stdlib.h>
#include <string.h>

#include "decider.h"

#define DEFAULT_STORE "agents"
// How long an agent is remembered after a completed conversation, in milliseconds.
#define REMEMBER_FOR_MS (24ULL * 3600 * 1000)

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
static decider_string_t buf_take(buf_t *b) {
    decider_string_t s = {.ptr = b->ptr, .len = b->len};
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

// A borrowed WIT string over `len` bytes at `ptr` (the callee does not free it).
static decider_string_t view(const uint8_t *ptr, size_t len) {
    return (decider_string_t){.ptr = (uint8_t *)ptr, .len = len};
}

// The host's message in a key-value error: every case carries one.
static const decider_string_t *message(const passthru_plugin_kv_kv_error_t *error) {
    switch (error->tag) {
    case PASSTHRU_PLUGIN_KV_KV_ERROR_NO_SUCH_STORE:
        return &error->val.no_such_store;
    case PASSTHRU_PLUGIN_KV_KV_ERROR_INVALID:
        return &error->val.invalid;
    case PASSTHRU_PLUGIN_KV_KV_ERROR_OVER_CAP:
        return &error->val.over_cap;
    default:
        return &error->val.unavailable;
    }
}

static void answer(decider_decision_t *ret, bool success, buf_t *reason) {
    ret->branch = success ? PASSTHRU_PLUGIN_TYPES_BRANCH_SUCCESS : PASSTHRU_PLUGIN_TYPES_BRANCH_FAILURE;
    ret->reason.is_some = true;
    ret->reason.val = buf_take(reason);
}

// A failed read or write (`what`: "read" or "write to"): logged, answered failure. Frees `error`.
static void cannot(decider_decision_t *ret, const char *what, const decider_string_t *store,
                   passthru_plugin_kv_kv_error_t *error) {
    buf_t b = {0};
    const decider_string_t *text = message(error);
    buf_str(&b, "cannot ");
    buf_str(&b, what);
    buf_str(&b, " store \"");
    buf_add(&b, store->ptr, store->len);
    buf_str(&b, "\": ");
    buf_add(&b, text->ptr, text->len);
    passthru_plugin_kv_kv_error_free(error);
    answer(ret, false, &b);
    passthru_plugin_host_log(PASSTHRU_PLUGIN_HOST_LEVEL_WARN, &ret->reason.val);
}

// Remembers `agent` for `caller`, or says why not.
static void remember(decider_decision_t *ret, decider_string_t *store, decider_string_t caller,
                     decider_string_t agent) {
    passthru_plugin_kv_kv_error_t error;
    uint64_t ttl = REMEMBER_FOR_MS;
    if (!passthru_plugin_kv_set(store, &caller, &agent, &ttl, &error)) {
        cannot(ret, "write to", store, &error);
        return;
    }
    buf_t b = {0};
    buf_str(&b, "remembered ");
    buf_add(&b, agent.ptr, agent.len);
    buf_str(&b, " for caller ");
    buf_add(&b, caller.ptr, caller.len);
    answer(ret, true, &b);
}

// Looks `caller` up: success with the agent remembered, else failure.
static void look_up(decider_decision_t *ret, decider_string_t *store, decider_string_t caller) {
    passthru_plugin_kv_kv_error_t error;
    decider_option_string_t agent;
    if (!passthru_plugin_kv_get(store, &caller, &agent, &error)) {
        cannot(ret, "read", store, &error);
        return;
    }
    buf_t b = {0};
    buf_str(&b, "caller ");
    buf_add(&b, caller.ptr, caller.len);
    if (agent.is_some) {
        buf_str(&b, " last spoke to ");
        buf_add(&b, agent.val.ptr, agent.val.len);
        decider_string_free(&agent.val);
    } else {
        buf_str(&b, " spoke to no agent in the last 24 hours");
    }
    answer(ret, agent.is_some, &b);
}

// The world's `decide` export. The call is ours to free; the decision's reason is freed by the
// generated glue after the host has read it, so it must come from malloc.
void exports_decider_decide(decider_call_details_t *call, decider_decision_t *ret) {
    decider_string_t key;
    decider_string_t store;
    decider_string_set(&key, "store");
    if (!passthru_plugin_host_config(&key, &store)) {
        decider_string_dup(&store, DEFAULT_STORE);
    }

    const decider_option_string_t *from = call->call_from.is_some ? &call->call_from : &call->from;
    const uint8_t *caller = from->is_some ? from->val.ptr : NULL;
    size_t caller_len = from->is_some ? from->val.len : 0;
    trim(&caller, &caller_len);
    const uint8_t *agent = call->dial_whom_number.is_some ? call->dial_whom_number.val.ptr : NULL;
    size_t agent_len = call->dial_whom_number.is_some ? call->dial_whom_number.val.len : 0;
    trim(&agent, &agent_len);
    bool completed = call->dial_call_status.is_some &&
                     call->dial_call_status.val.tag == PASSTHRU_PLUGIN_TYPES_DIAL_CALL_STATUS_COMPLETED;

    if (caller_len == 0) {
        buf_t b = {0};
        buf_str(&b, "no caller number (neither CallFrom nor From)");
        answer(ret, false, &b);
    } else if (agent_len > 0 && completed) {
        remember(ret, &store, view(caller, caller_len), view(agent, agent_len));
    } else {
        look_up(ret, &store, view(caller, caller_len));
    }
    decider_string_free(&store);
    decider_call_details_free(call);
}
