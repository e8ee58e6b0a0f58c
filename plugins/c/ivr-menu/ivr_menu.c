// ivr-menu in C: success when the caller pressed exactly 1.
//
// The same plugin as the Rust `plugins/ivr-menu`, decision for decision and reason for reason. It
// is a `lean-decider`: it reads nothing but the call's `digits`, through the `call` interface (the
// host has already removed the double quotes Exotel puts around them), so the host copies in that
// one field and not the whole call. `lean_decider.h` is generated from the WIT contract by
// `wit-bindgen c --world lean-decider`.

#include <stdlib.h>
#include <string.h>

#include "lean_decider.h"

// A new string, owned by the caller: `prefix` followed by `len` bytes of `tail`.
static void concat(lean_decider_string_t *out, const char *prefix, const uint8_t *tail,
                   size_t len) {
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

// The world's `decide-lean` export. The digits are ours to free when there are some (when there
// are none, what the bindings wrote to `digits` is not a string). The decision's reason is freed
// by the generated glue after the host has read it, so it must come from malloc.
void exports_lean_decider_decide_lean(lean_decider_decision_t *ret) {
    lean_decider_string_t digits;
    bool pressed = passthru_plugin_call_digits(&digits);
    ret->reason.is_some = true;
    if (pressed && digits.len == 1 && digits.ptr[0] == '1') {
        ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_SUCCESS;
        lean_decider_string_dup(&ret->reason.val, "caller pressed 1");
    } else if (pressed && digits.len > 0) {
        ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_FAILURE;
        concat(&ret->reason.val, "caller pressed ", digits.ptr, digits.len);
    } else {
        ret->branch = PASSTHRU_PLUGIN_TYPES_BRANCH_FAILURE;
        lean_decider_string_dup(&ret->reason.val, "no digits");
    }
    if (pressed) {
        lean_decider_string_free(&digits);
    }
}
