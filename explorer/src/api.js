// The public HTTP API of rsembed-db, with the key the user entered (kept for this tab
// only, in session storage) sent as X-API-Key.

const KEY_ITEM = "rsembed-api-key";

export class ApiError extends Error {
  constructor(status, field, message) {
    super(field ? `${field}: ${message}` : message);
    this.status = status;
    this.field = field;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

let inFlight = 0;
export const busy = () => inFlight > 0;

// fetch + JSON; a non-2xx answer becomes an ApiError with the field the service named.
export async function call(method, path, body = undefined, accept = "application/json") {
  const headers = { Accept: accept };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  inFlight += 1;
  try {
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.field || null, error.message || `${response.status} ${response.statusText}`);
    }
    return data;
  } finally {
    inFlight -= 1;
  }
}

export const get = (path, accept) => call("GET", path, undefined, accept);
export const post = (path, body, accept) => call("POST", path, body, accept);
export const del = (path) => call("DELETE", path);

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  return search.toString();
}
