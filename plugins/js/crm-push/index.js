// crm-push in JavaScript: delivers every call event of an async flow to the tenant's CRM with
// `fetch` (the host's `wasi:http`, to the hosts the flow lists in `outbound_hosts`).
//
// The same plugin as the Rust `plugins/crm-push`: for each event it POSTs the call as JSON to the
// flow's config value `crm_url`, with the event's id as the `Idempotency-Key` header (and
// `crm_token`, if set, as `Authorization: Bearer ...`). A 2xx answer is a delivered event;
// anything else fails the attempt, so the queue retries it: a 5xx or the call's deadline above
// all. Delivery is at least once, and the key lets the CRM drop a repeat.
//
// `record` is an async function: componentize-js runs the event loop until its promise settles,
// so `await fetch(...)` works in a synchronous export. Returning is `ok`; throwing a string is
// `err` with that message.

import { config, log } from "passthru:plugin/host@0.1.4";

/** The JSON body: the event, the call's main details, and every parameter Exotel sent. */
function payload(event, call) {
  // The event's id and time are 64-bit (BigInt here): written as JSON numbers by hand, since
  // JSON.stringify refuses BigInt.
  const rest = JSON.stringify({
    call_sid: call.callSid ?? null,
    caller: call.callFrom ?? call.from ?? null,
    called: call.callTo ?? call.to ?? null,
    digits: call.digits ?? null,
    params: call.params,
  });
  return (
    `{"event_id":${event.id},"attempt":${event.attempt},` +
    `"accepted_at_ms":${event.acceptedAtMs},${rest.slice(1)}`
  );
}

export async function record(event, call) {
  const url = config("crm_url");
  if (url === undefined) {
    throw "the flow's config has no crm_url";
  }
  const headers = {
    "content-type": "application/json",
    "idempotency-key": `${event.id}`,
  };
  const token = config("crm_token");
  if (token !== undefined) {
    headers.authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(url, { method: "POST", headers, body: payload(event, call) });
  } catch (error) {
    throw `CRM not reached: ${error}`;
  }
  const status = response.status;
  if (status >= 200 && status <= 299) {
    log("info", `delivered event=${event.id} attempt=${event.attempt} status=${status}`);
    return;
  }
  if (status >= 500 && status <= 599) {
    throw `CRM answered ${status}; will retry`;
  }
  throw `CRM answered ${status}`;
}
