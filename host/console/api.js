// The console's only way to the server: the public /v1 API, with the signed-in token as a
// bearer token. Errors come back as RFC 9457 problems; their `detail` is what the user sees.

const TOKEN = "passthru.token";
const ROLE = "passthru.role";

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function role() {
  return sessionStorage.getItem(ROLE);
}

export function signIn(value, as) {
  sessionStorage.setItem(TOKEN, value);
  sessionStorage.setItem(ROLE, as);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(ROLE);
}

/** A failed API call: the problem's detail as the message. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && typeof problem === "object"
      ? problem.detail || problem.title
      : problem;
    super(detail || `the server answered ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * Calls the API: `body` is sent as JSON, or as the raw bytes of an upload when it is a Blob or
 * an ArrayBuffer. Resolves to the parsed answer (null for 204); rejects with an ApiError.
 */
export async function api(method, path, body, tokenOverride) {
  const headers = { Authorization: `Bearer ${tokenOverride ?? token() ?? ""}` };
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    headers["Content-Type"] = "application/wasm";
    payload = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: payload, credentials: "omit", cache: "no-store", redirect: "error",
    });
  } catch (e) {
    throw new ApiError(0, `the server could not be reached (${e.message})`);
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** A path segment, encoded. */
export const seg = encodeURIComponent;

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}
