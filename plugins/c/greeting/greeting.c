// greeting in C: the text a Greeting applet reads out, by the time of day in India.
//
// The same plugin as the Rust `plugins/greeting`, text for text and reason for reason. The hour
// comes from Exotel's `CurrentTime` (India time), or `StartTime` when it is absent. The flow's
// config may replace each text: `morning` (5:00 to 11:59), `afternoon` (12:00 to 16:59),
// `evening` (17:00 to 4:59), and `unknown` when the request carries neither time. Built against
// the world `greeter`: it exports `greeting`, whose text is answered as `text/plain`.
// `greeter.h` is generated from the WIT contract by `wit-bindgen c --world greeter`.

#include <stdlib.h>
#include <string.h>

#include "greeter.h"

// India is UTC+05:30, all year.
#define IST_OFFSET_SECONDS (5 * 3600 + 30 * 60)

// A malloc'd copy of `s`, as a WIT string (the glue frees what we answer).
static greeter_string_t copy(const char *s) {
    size_t len = strlen(s);
    uint8_t *ptr = malloc(len > 0 ? len : 1);
    if (ptr == NULL) {
        abort();
    }
    memcpy(ptr, s, len);
    return (greeter_string_t){.ptr = ptr, .len = len};
}

// The flow's text for `key`, or a copy of `fallback`; an empty one is kept, as it is in Rust.
static greeter_string_t configured(const char *key, const char *fallback) {
    greeter_string_t name;
    greeter_string_t value = {0};
    greeter_string_set(&name, key);
    return passthru_plugin_host_config(&name, &value) ? value : copy(fallback);
}

static int hour_in_india(int64_t unix_seconds) {
    // C's % keeps the dividend's sign: add a day to what is negative, as Rust's rem_euclid
    // would. (Exotel's times are far from the ends of int64_t, so the sum cannot overflow.)
    int64_t rem = (unix_seconds + IST_OFFSET_SECONDS) % 86400;
    return (int)((rem < 0 ? rem + 86400 : rem) / 3600);
}

static const char *part_of_day(int hour) {
    if (hour >= 5 && hour <= 11) {
        return "morning";
    }
    if (hour >= 12 && hour <= 16) {
        return "afternoon";
    }
    return "evening";
}

static const char *default_text(const char *part) {
    if (strcmp(part, "morning") == 0) {
        return "Good morning, thank you for calling.";
    }
    if (strcmp(part, "afternoon") == 0) {
        return "Good afternoon, thank you for calling.";
    }
    return "Good evening, thank you for calling.";
}

// The world's `greeting` export. The call is ours to free; the reply's strings are freed by the
// generated glue after the host has read them, so they must come from malloc.
void exports_greeter_greeting(greeter_call_details_t *call, greeter_text_reply_t *ret) {
    // A CurrentTime Exotel sent in a shape we cannot read is not replaced by StartTime.
    const passthru_plugin_types_option_timestamp_t *time =
        call->current_time.is_some ? &call->current_time : &call->start_time;
    ret->reason.is_some = true;
    if (!time->is_some || !time->val.unix_seconds.is_some) {
        ret->text = configured("unknown", "Hello, thank you for calling.");
        ret->reason.val = copy("no CurrentTime or StartTime");
    } else {
        const char *part = part_of_day(hour_in_india(time->val.unix_seconds.val));
        ret->text = configured(part, default_text(part));
        greeter_string_t reason = copy(part);
        const char *suffix = " in India";
        uint8_t *grown = realloc(reason.ptr, reason.len + strlen(suffix));
        if (grown == NULL) {
            abort();
        }
        memcpy(grown + reason.len, suffix, strlen(suffix));
        reason.ptr = grown;
        reason.len += strlen(suffix);
        ret->reason.val = reason;
    }
    greeter_call_details_free(call);
}
