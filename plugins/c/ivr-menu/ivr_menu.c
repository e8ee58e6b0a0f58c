// ivr-menu in C: success when the caller pressed exactly 1.
//
// The same plugin as the Rust `plugins/ivr-menu`, decision for decision and reason for reason. It
// reads nothing but the call's `digits` (the host has already removed the double quotes Exotel
// puts around them). `decider.h` is generated from the WIT contract by `wit-bindgen c`.

#include <stdlib.h>
#include <string.h>

#include "decider.h"

// A new string, owned by the caller: `prefix` followed by `len` bytes of `tail`.
static void concat(decider_string_t *out, const char *prefix, const uint8_t *tail, size_t len) {
    size_t head = strlen(prefix);
    uint8_t *bytes = malloc(head + len);
    if (bytes == NULL) {
        abort();
    }
    memcpy(bytes, prefix, head);
    memcpy(bytes + head, tail, len);
    out->ptr = bytes;
    out->len = head + len;
}

// The world's `decide` export. The call is ours to free; the decision's reason is freed by the
// generated glue after the host has read it, so it must come from malloc.
void exports_decider_decide(decider_call_details_t *call, decider_decision_t *ret) {
    const decider_option_string_t *digits = &call->digits;
    ret->reason.is_some = true;
    if (digits->is_some && digits->val.len == 1 && digits->val.ptr[0] == '1') {
        ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_SUCCESS;
        decider_string_dup(&ret->reason.val, "caller pressed 1");
    } else if (digits->is_some && digits->val.len > 0) {
        ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_FAILURE;
        concat(&ret->reason.val, "caller pressed ", digits->val.ptr, digits->val.len);
    } else {
        ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_FAILURE;
        decider_string_dup(&ret->reason.val, "no digits");
    }
    decider_call_details_free(call);
}
